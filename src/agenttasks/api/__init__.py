"""The HTTP edge: Litestar controllers, auth and problem details. No business logic here."""
