"""What crosses a boundary: workflow and activity inputs and results, queries, updates and
signals, business-keyed ids and search attributes. Split by topic; each module imports only
from this package's own modules."""
