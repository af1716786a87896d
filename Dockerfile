# mailpool: multi-stage build on Debian 12 (bookworm).
# Build stage: compiler and -dev packages.  Runtime stage: shared libraries,
# tini, a non-root user with a numeric id (10001, so Kubernetes'
# runAsNonRoot can verify it).  Configuration by environment (MAILPOOL_*).
# The service writes no files: it runs with a read-only root file system and
# every capability dropped (`make container` builds, `make container-test`
# runs it that way).

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc make pkg-config libc6-dev \
      libmicrohttpd-dev libjansson-dev libgnutls28-dev libinih-dev \
      libsqlite3-dev libgmime-3.0-dev libidn2-dev libpq-dev \
      libcurl4-gnutls-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make clean && make all

FROM debian:bookworm-slim
# The runtime list must cover every library `ldd build/mailpool` names
# (checked by tests/integration/test_dockerfile.sh).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmicrohttpd12 libjansson4 \
      libgnutls30 libinih1 libsqlite3-0 libgmime-3.0-0 libidn2-0 libpq5 \
      libcurl3-gnutls \
      ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 mailpool \
 && useradd --uid 10001 --gid 10001 --no-create-home \
      --shell /usr/sbin/nologin mailpool
COPY --from=build /src/build/mailpool /usr/local/bin/mailpool
# The durable queue (queue.path) lives on a volume.
RUN mkdir -p /var/lib/mailpool && chown 10001:10001 /var/lib/mailpool
VOLUME /var/lib/mailpool
USER 10001:10001
ENV MAILPOOL_HTTP_LISTEN=0.0.0.0:8025 \
    MAILPOOL_QUEUE_PATH=/var/lib/mailpool/queue.db \
    MAILPOOL_RELAY_HOST=localhost \
    MAILPOOL_RELAY_PORT=25
EXPOSE 8025
HEALTHCHECK --interval=15s --timeout=5s --retries=3 \
  CMD ["/usr/local/bin/mailpool", "healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/mailpool"]
CMD ["serve"]
