"""The audit log: every change made through the APIs, appended in the change's transaction
(``repository``), recorded by the routes through a per-request trail (``service``), read at
``GET /v1/audit`` as JSON pages or CSV (``endpoints``)."""
