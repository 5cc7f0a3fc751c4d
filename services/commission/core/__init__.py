"""The commission rules, pure (no I/O, no clock reads, no framework imports), one module per
capability: program, commission, ledger, statements, reconciliation, reports; errors holds
the refusals, each a class carrying its HTTP status and code."""
