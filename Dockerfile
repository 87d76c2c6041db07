# orderwatch in a container: docker build -t orderwatch . (docs/deploy.md shows the run line)
# Build stage: install the package into a self-contained virtual environment.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY daemon ./daemon
RUN python -m venv /opt/orderwatch \
    && /opt/orderwatch/bin/pip install --no-cache-dir .

# Runtime stage: the virtual environment only, run by an unprivileged user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/orderwatch \
        --shell /usr/sbin/nologin orderwatch \
    && mkdir -p /var/lib/orderwatch /etc/orderwatch \
    && chown orderwatch:orderwatch /var/lib/orderwatch \
    && chmod 0700 /var/lib/orderwatch
COPY --from=build /opt/orderwatch /opt/orderwatch
ENV PATH=/opt/orderwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ORDERWATCH_CONFIG=/etc/orderwatch/orderwatch.toml \
    ORDERWATCH_STATE__PATH=/var/lib/orderwatch/orderwatch.db \
    ORDERWATCH_METRICS__LISTEN=0.0.0.0:9464
USER 10001:10001
WORKDIR /var/lib/orderwatch
VOLUME ["/var/lib/orderwatch"]
EXPOSE 9464
# orderwatch is PID 1 here and handles SIGTERM itself; run with --init to also reap strays.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=2m --retries=3 \
    CMD ["orderwatch", "health"]
ENTRYPOINT ["orderwatch"]
CMD ["run"]
