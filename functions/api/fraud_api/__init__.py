"""HTTP function: the FastAPI app (served by Mangum on Lambda, uvicorn locally)."""
