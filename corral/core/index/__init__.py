"""The index: typed projections of custom metadata, and one query model over items.

``keys`` keeps the organisation's index keys in step with its metadata schema; ``projection``
writes each item's projected values; ``filters`` and ``syntax`` are the query model (a JSON
tree, and the text syntax compiled to it); ``query`` runs it (pages, counts, facets).
"""
