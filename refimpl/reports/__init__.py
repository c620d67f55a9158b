"""Reports a person reads: the HTML pages of certify, compare, audit and audit-dir."""
