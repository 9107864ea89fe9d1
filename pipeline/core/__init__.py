"""The bottom layer: the job's vocabulary and rules, shared by everything above.

Errors and their codes, settings, the job (spec and state), the stage interface and the DAG
type, a job's workspace, logging, the URL policy, URL redaction, the card and manifest models,
what a source said about itself, language tags and timed text. Nothing here runs a tool,
touches storage or knows a stage by name.
"""
