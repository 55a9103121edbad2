"""The outside faces: FastAPI app and routers, auth, and the ``riskmap`` CLI."""
