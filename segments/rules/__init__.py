"""The rule-segment definition language: validation, compilation to SQL, single-profile evaluation.

``validate.definition_errors`` checks a condition tree and returns marketer-readable messages per
field path; ``compile.definition_q`` turns it into one ORM filter over live profiles;
``evaluate.definition_match`` evaluates it in Python over one profile's loaded facts. Both paths
share the operator semantics in ``ops`` and are proven to agree by a property test.
The language is documented in docs/segments.md.
"""
