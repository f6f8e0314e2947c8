"""What every stage function receives: the config, the run directory, the process group."""

from __future__ import annotations

from dataclasses import dataclass, field

from tqdm import tqdm

from puzzlecam.data import SplitData, load_split, split_name
from puzzlecam.models.engine import resolve_engine
from puzzlecam.pipeline.config import RunConfig
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.training.distributed import DistContext

__all__ = ["RunContext"]


@dataclass
class RunContext:
    config: RunConfig
    run: RunDir
    dist: DistContext = field(default_factory=DistContext)
    progress: bool = True
    _splits: dict[str, SplitData] = field(default_factory=dict, repr=False)
    _engine: str | None = field(default=None, repr=False)

    @property
    def engine(self) -> str:
        """What runs the inference stages' networks: ``config.engine`` resolved for the
        device once (``models.engine.resolve_engine``); a fallback is said once."""
        if self._engine is None:
            self._engine, note = resolve_engine(self.config.engine, self.dist.device)
            if note:
                self.log(f"note: {note}")
        return self._engine

    def log(self, message: str) -> None:
        """Print on the main process only, without breaking progress bars."""
        if self.dist.is_main:
            tqdm.write(message)

    def split(self, role: str) -> SplitData:
        """The samples of the train or val split (read once, then cached)."""
        if role not in self._splits:
            data = load_split(self.config.data, role)
            if data.skipped and self.dist.is_main:
                shown = ", ".join(f"{i} ({why})" for i, why in data.skipped[:5])
                self.log(
                    f"{split_name(self.config.data, role)}: {len(data.skipped)} images left out: {shown}"
                )
            self._splits[role] = data
        return self._splits[role]

    def split_name(self, role: str) -> str:
        return split_name(self.config.data, role)
