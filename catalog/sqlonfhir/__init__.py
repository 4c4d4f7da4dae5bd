"""SQL-on-FHIR v2 conversion engine: ViewDefinitions compiled into fast plans (plan.py, fast.py)."""
