# syntax=docker/dockerfile:1
#
# agentsync as a static binary in an empty image.
#
#   docker build -t agentsync .
#   docker run --rm --read-only \
#     -v "$PWD/punch.toml:/etc/agentsync/punch.toml:ro" \
#     -v agentsync-state:/var/lib/agentsync \
#     --env-file punch.env \
#     agentsync --config /etc/agentsync/punch.toml
#
# The image holds the binary, CA certificates and a passwd entry for the
# non-root user, nothing else: no shell, no temp dir. agentsync writes only to
# AGENTSYNC_STATE_DIR (the lock and the journal), so mount a volume there and
# run with a read-only root filesystem.

# --- build: a static musl binary -------------------------------------------
FROM rust:1-alpine AS build

# mimalloc compiles C; ca-certificates is copied into the final image. The
# packages follow the Alpine release of the image tag rather than exact pins.
# hadolint ignore=DL3018
RUN apk add --no-cache build-base musl-dev ca-certificates

WORKDIR /src
COPY . .

# The target follows the build platform (x86_64 or aarch64), both static on
# musl. Without default features: the bundled mock (`mock`, `demo`) is for
# trying the tool and for tests, not for production. The caches keep the registry and compiled dependencies across builds;
# the binary is copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" \
    && cargo build --release --locked --no-default-features --target "$target" \
    && cp "target/$target/release/agentsync" /agentsync

# The state directory, owned by the runtime user so that a fresh named volume
# mounted there inherits the ownership; the non-root user's passwd entry.
RUN mkdir -p /rootfs/etc /rootfs/var/lib/agentsync \
    && echo 'nonroot:x:65532:65532:nonroot:/var/lib/agentsync:/sbin/nologin' > /rootfs/etc/passwd \
    && echo 'nonroot:x:65532:' > /rootfs/etc/group

# --- run: nothing but the binary --------------------------------------------
FROM scratch

COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /rootfs/etc/passwd /rootfs/etc/group /etc/
# The parent is copied so that --chown surely applies to agentsync/ itself.
COPY --from=build --chown=65532:65532 /rootfs/var/lib/ /var/lib/
COPY --from=build /agentsync /agentsync

# The system trust store of this image; `[source] ca_file` adds a private CA.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
ENV AGENTSYNC_STATE_DIR=/var/lib/agentsync

USER 65532:65532
ENTRYPOINT ["/agentsync"]
CMD ["--help"]

LABEL org.opencontainers.image.title="agentsync" \
      org.opencontainers.image.description="Link contact-center agents in a SCIM directory to their IDs in another system" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
