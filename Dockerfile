# primserve container image: build on debian:bookworm, run on debian:bookworm-slim as non-root.
#
#   docker build -t primserve .                          # RUN_TESTS=1 also runs the test suite
#   docker run -p 50051:50051 -p 8081:8081 -v models:/var/lib/primserve/models primserve
#
# Flags come from PRIMSERVE_* environment variables (see README) or arguments after the image.

FROM debian:bookworm AS build
ARG RUN_TESTS=0
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN tests=OFF; if [ "$RUN_TESTS" = 1 ]; then tests=ON; fi \
 && cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DPRIMSERVE_BUILD_TESTS=$tests -DPRIMSERVE_BUILD_BENCH=OFF \
 && cmake --build /build -j"$(nproc)" \
 && if [ "$RUN_TESTS" = 1 ]; then (cd /build && ctest --output-on-failure); fi \
 && mkdir -p /out \
 && cp /build/server/primserve-server /build/client/cli/primserve-cli /out/ \
 && strip /out/primserve-server /out/primserve-cli \
 # The runtime image installs exactly the Debian packages that own the binaries' shared libraries.
 && for b in /out/primserve-server /out/primserve-cli; do ldd "$b" | awk '/=>/ {print $3}'; done | sort -u \
    | while read -r lib; do dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib"; done \
    | cut -d: -f1 | sort -u > /out/runtime-packages.txt \
 && cat /out/runtime-packages.txt

FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /out/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends $(cat /tmp/runtime-packages.txt) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && useradd --system --uid 10001 --home-dir /var/lib/primserve --shell /usr/sbin/nologin primserve \
 && mkdir -p /var/lib/primserve/models \
 && chown -R primserve:primserve /var/lib/primserve
COPY --from=build /out/primserve-server /out/primserve-cli /usr/local/bin/
ENV PRIMSERVE_ADDRESS=0.0.0.0:50051 \
    PRIMSERVE_ADMIN_ADDRESS=0.0.0.0:8081 \
    PRIMSERVE_METRICS_ADDRESS=0.0.0.0:8082 \
    PRIMSERVE_MODEL_DIR=/var/lib/primserve/models
VOLUME ["/var/lib/primserve/models"]
EXPOSE 50051 8081 8082
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/primserve-cli", "--address=127.0.0.1:8081", "--timeout_seconds=3", "health"]
ENTRYPOINT ["/usr/local/bin/primserve-server"]
