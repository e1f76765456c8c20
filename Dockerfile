# One image for every role: the entrypoint is `agenttasks`, the command picks the role
# (`docker run IMAGE api`, `... worker`, `... migrate`; compose.yaml runs them all).
#
# Two stages: the first installs the package and its dependencies into a virtual environment,
# the second copies only that environment onto a clean slim image, so no pip cache, build
# front-end or source tree is left in what runs. Every dependency ships a manylinux wheel for
# CPython 3.11 (checked for x86_64), so no compiler is needed in either stage.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/agenttasks
WORKDIR /src
# What `pip install .` reads: the project file, the readme it names, the package, and
# nats.conf (src/agenttasks/nats.conf is a link to it: without it the wheel would lack it).
COPY pyproject.toml README.md nats.conf ./
COPY src ./src
RUN /opt/agenttasks/bin/pip install . \
    && /opt/agenttasks/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
# A fixed, unprivileged uid: volumes and Kubernetes' runAsNonRoot can name it.
RUN groupadd --system --gid 10001 agenttasks \
    && useradd --system --uid 10001 --gid agenttasks --create-home agenttasks
COPY --from=build /opt/agenttasks /opt/agenttasks
ENV PATH=/opt/agenttasks/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AGENTTASKS_HOME=/home/agenttasks/.agenttasks
USER agenttasks:agenttasks
WORKDIR /home/agenttasks
# The API listens here when AGENTTASKS_HOST=0.0.0.0 (compose.yaml sets it).
EXPOSE 8000
ENTRYPOINT ["agenttasks"]
CMD ["--help"]
