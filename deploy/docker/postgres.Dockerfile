# PostgreSQL 15 from Debian's packages, for places without registry access. Configured like
# the official `postgres` image: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, PGDATA,
# PGPORT, and arguments passed to the server (`postgres -c name=value …`); so the compose
# file can swap either image in. With postgresql-hll (the reports' visitor sketches): the
# migration creates the extension as POSTGRES_USER, the cluster's superuser here.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# no "main" cluster from the package's post-install: the entry point makes one in PGDATA
RUN mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/no-main.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 postgresql-15-hll \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/lib/postgresql/backups /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
 && chmod 700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data \
    PGPORT=5432
USER postgres
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["sh", "-c", "pg_isready -q -h 127.0.0.1 -p \"$PGPORT\""]
# SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for every client to leave)
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]
