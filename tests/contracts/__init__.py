"""Events as storage contracts: the frozen catalogue of event classes and stored fixtures."""
