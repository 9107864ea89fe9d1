"""The bottom layer: the job's vocabulary and rules, shared by everything above.

Errors and their codes, settings, the job (spec and state), the stage interface and the DAG
type, a job's workspace, logging, the URL policy, URL redaction, the card and manifest models,
what a source said about itself and what its media is, language tags and timed text, and the
typed readers of the stage outputs other stages read (:mod:`pipeline.core.readers`, the only
module here that names stages). Nothing here runs a tool or touches storage.
"""
