"""2-D maps of embedding keys: a projection job (``build``), map areas as index filters
(``area``), and the points the web UI draws (``service``).  See docs/vectors.md."""
