# cartclass as a container image: one static Go binary on distroless, running as uid 65532
# (nonroot), its database on the /data volume.
#
#   docker build -t cartclass:latest .
#   docker run --rm cartclass:latest -version
#
# deploy/compose.yaml runs it behind Caddy for HTTPS (see the README, "Running it for a school").
#
# CI cannot pull container images, so it never builds this file. It checks the build with the
# very same go build line as the RUN below instead (.ci/run runs it; deploy_test.go fails if
# the two lines differ). Change both together.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
# Then the source, .git included: go build stamps the VCS revision into the binary (git is in
# this image), and `cartclass -version` prints it. .dockerignore leaves out only files that
# git ignores too, so the stamp does not claim uncommitted changes.
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o bin/cartclass .
# distroless has no shell to make a folder in: make the data folder here, 0700 as cartclass
# makes its folders, and hand it to uid 65532 below.
RUN install -d -m 0700 /data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/cartclass /cartclass
COPY --from=build --chown=65532:65532 /data /data
ENV CARTCLASS_DB=/data/cartclass.db CARTCLASS_ADDR=:8080 CARTCLASS_BACKUP_DIR=/data/backups
VOLUME /data
EXPOSE 8080
USER nonroot
# No curl in distroless: the binary checks itself. `cartclass healthcheck` GETs /healthz on
# CARTCLASS_ADDR's port at 127.0.0.1 and exits 0 on 200, 1 otherwise.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["/cartclass", "healthcheck"]
ENTRYPOINT ["/cartclass"]
