# The hotline router image: `hotline worker` (faust) and `hotline serve` (api) in
# docker-compose.yml. Build: docker build -t hotline-router .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# A CJK font so the bulletin's charts can label Chinese categories.
RUN apt-get update && apt-get install -y --no-install-recommends fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, so code edits do not reinstall them: a throwaway install of the
# project's declared dependencies from pyproject.toml alone.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps))" \
    && pip install -r /tmp/requirements.txt

COPY . .
# The bundled Jinshan model (内置金山模型) is trained at build time, as root, into the installed
# classifier package, so the unprivileged runtime user only reads it.
RUN pip install . \
    && hotline build-model \
    && useradd --create-home --uid 10001 hotline \
    && mkdir -p /var/lib/hotline \
    && chown hotline:hotline /var/lib/hotline

# Runtime working directory: faust keeps its local table state under the current directory.
WORKDIR /var/lib/hotline
USER hotline
EXPOSE 8080 9108
CMD ["hotline", "worker"]
