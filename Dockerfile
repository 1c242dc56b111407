# syntax=docker/dockerfile:1
# Build stage: the same command as `make build` (CI runs that one, so the binary this
# image ships is built on every change even where no Docker engine runs).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

# Runtime: distroless (glibc, CA certificates, no shell), non-root, the one binary.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ceryx /usr/local/bin/ceryx
USER 65532:65532
EXPOSE 8080 8443 5555 9090
ENTRYPOINT ["/usr/local/bin/ceryx"]
CMD ["run"]
