"""Labels: ontologies, projects and one label row per data unit of a project.

``ontology`` reads an ontology document (the SDK's ``editor``) into an index of feature
hashes, ``ontologies`` and ``projects`` store them, ``validation`` checks a label document
against an ontology, and ``label_rows`` lists, creates, reads and saves label rows.
"""
