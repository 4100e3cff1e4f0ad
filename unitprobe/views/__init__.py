"""What a person looks at: figures drawn from result tables, and the HTML report.

A view takes in-memory tables and never touches a model. See ``docs/architecture.md``.
"""
