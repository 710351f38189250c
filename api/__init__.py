"""The HTTP API and the dispatcher console (接口与派单台): `create_api(app)` in `api.app`."""
