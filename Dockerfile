# syntax=docker/dockerfile:1
# Carebridge server image.
#   docker build -t carebridge:0.1.0 .
#   docker run --rm -p 8080:8080 carebridge:0.1.0
# Settings come from CAREBRIDGE_* variables (see src/config.rs); the chart in helm/carebridge
# sets them for Kubernetes.

FROM rust:1-bookworm AS build
WORKDIR /src
# The whole context, less what .dockerignore leaves out (target/, .git, helm/, docs/ ...).
COPY . .
# Cache mounts keep the registry and build artefacts between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/carebridge /out/carebridge

FROM debian:bookworm-slim AS runtime
# ca-certificates: the provider is reached over HTTPS and verified against the system roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 carebridge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin carebridge
WORKDIR /app
# Owned by root and only readable by the server's user: nothing in /app is writable at run time.
COPY --from=build /out/carebridge /app/carebridge
COPY policies/ /app/policies/
COPY prompts/ /app/prompts/
USER 10001:10001
EXPOSE 8080
ENV CAREBRIDGE_SERVER__HOST=0.0.0.0
# A policy reload compiles the new set on a blocking thread while the old one serves. With
# glibc's per-thread arenas the old set's freed pages stayed with the main thread's arena and the
# next compile took fresh ones: resident memory grew to three sets instead of two.
# One arena lets each compile reuse what the previous set freed (docs/operations.md, "Memory").
ENV MALLOC_ARENA_MAX=1
ENTRYPOINT ["/app/carebridge"]
CMD ["serve"]
