# The service image: no torch, only what serving needs. Multi-stage: wheels are built in the
# first stage, the second installs them and runs as a non-root user.
#   CPU: docker build -t gan-serving:cpu .
#   GPU: docker build --build-arg EXTRAS=serve,cuda -t gan-serving:gpu .
#        (onnxruntime-gpu with CUDA 13 and cuDNN 9 from NVIDIA's wheels; needs the NVIDIA
#        container toolkit on the host and a driver for CUDA 13)
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS=serve
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 gan
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER gan
ENV GAN_MODEL_REPOSITORY=/models GAN_GRPC_PORT=8001 GAN_METRICS_PORT=8002
EXPOSE 8001 8002
VOLUME ["/models"]
STOPSIGNAL SIGTERM
# Healthy = the gRPC health service says SERVING (every model loaded, not draining).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["python", "-m", "service.healthcheck"]
CMD ["gan-serve"]
