# Multi-stage build: compile with the Rust toolchain, ship a small Debian runtime image.
# io_uring note: Docker's default seccomp profile blocks io_uring; ringgate falls back to epoll
# (see README "Containers and io_uring") or run with a profile that allows io_uring_* syscalls.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ringgate

FROM debian:bookworm-slim
# the system trust store, for backends reached over TLS without a configured `backendTLS.root`
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ringgate /usr/local/bin/ringgate
EXPOSE 3000 15000
ENTRYPOINT ["/usr/local/bin/ringgate"]
