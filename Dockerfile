# The service image: no torch, only what serving needs. Multi-stage: wheels are built in the
# first stage, the second installs them into a virtualenv and runs as a non-root user.
#   CPU: docker build -t gan-serving:cpu .
#   GPU: docker build --build-arg BASE_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 -t gan-serving:gpu .
#        (the same image on NVIDIA's CUDA 13 + cuDNN 9 runtime, which onnxruntime-gpu's CUDA
#        provider loads; needs the NVIDIA container toolkit on the host)
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
COPY deploy/docker/python-venv.sh /usr/local/bin/python-venv.sh
RUN python-venv.sh
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[serve]"

FROM ${BASE_IMAGE}
COPY deploy/docker/python-venv.sh /usr/local/bin/python-venv.sh
RUN python-venv.sh && useradd --create-home --uid 10001 gan
ENV PATH=/opt/venv/bin:$PATH
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
