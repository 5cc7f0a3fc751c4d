# Alliance: one image for the three services, the migrations and the command line.
#   docker run alliance tracker|attribution|commission|migrate|topics|admin …
# Built by deploy/docker/build.sh from a context holding `wheels/` (this project's wheel and
# its dependencies at the versions of constraints.txt, made on the build host), so the
# image's build needs no access to PyPI.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY wheels /wheels
RUN python3 -m venv /opt/alliance \
 && /opt/alliance/bin/pip install --no-cache-dir --no-index --find-links /wheels alliance \
 && /opt/alliance/bin/pip uninstall -y pip \
 && find /opt/alliance -name '__pycache__' -prune -exec rm -rf {} + \
 && /opt/alliance/bin/python -m compileall -q /opt/alliance/lib

FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/alliance --create-home alliance
COPY --from=build /opt/alliance /opt/alliance
ENV PATH=/opt/alliance/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ALLIANCE_ENV=production \
    ALLIANCE_HOST=0.0.0.0 \
    ALLIANCE_STATE_DIR=/var/lib/alliance \
    ALLIANCE_HEALTH_PORT=8001
USER alliance
WORKDIR /var/lib/alliance
VOLUME ["/var/lib/alliance"]
EXPOSE 8001 8002 8003
# ALLIANCE_HEALTH_PORT: the port of the service this container runs (8001 tracker,
# 8002 attribution, 8003 commission); the compose file and the Helm chart set it.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ['ALLIANCE_HEALTH_PORT'], timeout=2)"]
ENTRYPOINT ["alliance"]
CMD ["--help"]
