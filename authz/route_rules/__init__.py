"""The service's own route rules (``routes.rules``): match conditions (``patterns``), the compiled table and its
precedence (``table``), and ``authz routes explain`` (``explain``)."""
