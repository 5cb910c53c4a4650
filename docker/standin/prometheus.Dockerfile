# A local stand-in for prom/prometheus (the `prometheus` service of docker/compose.yaml,
# PROMETHEUS_IMAGE=handpose-sweep:standin-prometheus), for machines that reach no image
# registry: Debian's own prometheus package (2.42 in bookworm) on the root file system that
# docker/standin/build.sh imports. Like the official image it runs as `nobody` with its data
# in /prometheus; compose gives the same flags to both (config path, listen address, storage).
ARG ROOTFS=handpose-sweep:bookworm-rootfs
FROM ${ROOTFS}

# No init system in a build: policy-rc.d keeps the package's postinst from starting a daemon.
# The apt mirror here may be a dated snapshot, hence no Valid-Until check.
# hadolint ignore=DL3008
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
    && apt-get -o Acquire::Check-Valid-Until=false update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
    && mkdir -p /prometheus && chown nobody:nogroup /prometheus

USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", \
     "--web.listen-address=0.0.0.0:9090"]
