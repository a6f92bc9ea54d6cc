# CPU image of the service: no torch, only what serving needs.
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[serve]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 gan
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER gan
ENV GAN_MODEL_REPOSITORY=/models GAN_GRPC_PORT=8001 GAN_METRICS_PORT=8002
EXPOSE 8001 8002
VOLUME ["/models"]
STOPSIGNAL SIGTERM
CMD ["gan-serve"]
