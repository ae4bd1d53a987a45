"""A custom MLServer runtime for the fault-candidate tests: a model that fails in a chosen way.

``parameters.extra.fault`` in ``model-settings.json`` picks the fault:

* ``error``: every inference raises, which MLServer answers with HTTP 500;
* ``empty``: every inference answers 200 with an output holding no data (no prediction).

MLServer imports it as ``fault_runtime.FaultModel`` from the folder it is started in (or from
``PYTHONPATH``); the example specs set both.
"""

from __future__ import annotations

from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

FAULTS = ("error", "empty")


class FaultModel(MLModel):  # type: ignore[misc]
    """Answers every inference with the configured fault."""

    async def load(self) -> bool:
        extra = (self.settings.parameters.extra or {}) if self.settings.parameters else {}
        self.fault = extra.get("fault", "error")
        if self.fault not in FAULTS:
            raise MLServerError(f"fault must be one of {FAULTS}, not {self.fault!r}")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        if self.fault == "error":
            raise MLServerError("injected fault: this candidate always fails", status_code=500)
        return InferenceResponse(
            model_name=self.name,
            outputs=[ResponseOutput(name="predict", shape=[1, 0], datatype="INT64", data=[])],
        )
