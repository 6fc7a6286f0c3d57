# The globalaccel image: the loop and the probers the Pulumi modules deploy (`globalaccel up ...`).
#   ./scripts/build-image REGISTRY/globalaccel:TAG    builds, pushes and prints the digest to pin in the stack
#                                                     (global-accel:iac.image: REGISTRY/globalaccel@sha256:...)
# The stack's files are not baked in: the pods mount them from a ConfigMap (/etc/globalaccel/stacks).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY globalaccel ./globalaccel
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
# Matches the pods' securityContext (runAsUser/runAsGroup 10001, read-only root filesystem: state and
# /tmp are volumes).
RUN groupadd --gid 10001 globalaccel && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin globalaccel
USER 10001:10001
# numba keeps the router's compiled kernels here (globalaccel.routing.compiled): the pods' /tmp is a writable volume,
# the install is read-only and the user has no home. Compiled once per pod, about 3 s, at its first evaluation.
ENV NUMBA_CACHE_DIR=/tmp/numba
WORKDIR /var/lib/globalaccel
ENTRYPOINT ["globalaccel"]
CMD ["--help"]
