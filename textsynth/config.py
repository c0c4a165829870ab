"""Pydantic models of the pipeline YAML.

Kept free of torch so that every mistake in a pipeline file is found, with its file and line,
before a model loads.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from textsynth.config_base import ConfigBase
from textsynth.quality_config import QualityConfig, SeedExamples

SCHEMA_VERSION = 1
# The plan holds every request in memory (about 1 kB each with its rendered prompt): a typo of a
# few zeros in `n` must be an error, not minutes of swapping. Bigger datasets: several runs.
MAX_EXAMPLES = 1_000_000
BASE_VARIABLES = ("label", "label_description", "labels", "task_description")


def _reject_duplicates(names: list[str], what: str, rule: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate {what} {dupes[0]!r}: {rule}")


class Value(ConfigBase):
    """One value of a taxonomy attribute; `children` are attributes that apply only under it."""

    name: str = Field(min_length=1, description="The value as templates see it, e.g. 'blender'.")
    weight: float = Field(1.0, gt=0, description="Relative share of examples that get this value.")
    count: int | None = Field(
        None,
        ge=0,
        le=MAX_EXAMPLES,
        description="Exact examples per label with this value (oversample an edge case).",
    )
    edge_case: bool = Field(False, description="Marks a rare case real data lacks; listed in the card.")
    children: dict[str, Attribute] = Field(
        default_factory=dict, description="Nested attributes chosen only when this value is."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class Attribute(ConfigBase):
    """A taxonomy dimension such as product, persona or length."""

    description: str = Field("", description="What the attribute means; shown in the card.")
    values: list[Value] = Field(min_length=1, description="Its values, strings or mappings.")

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        return {"values": data} if isinstance(data, list) else data

    @field_validator("values")
    @classmethod
    def _unique(cls, values: list[Value]) -> list[Value]:
        _reject_duplicates([v.name for v in values], "value", "each value may appear once")
        return values


class Label(ConfigBase):
    """A class of the dataset; the description is what the model is told the label means."""

    name: str = Field(min_length=1, description="ClassLabel name, e.g. 'positive'.")
    description: str = Field(min_length=1, description="What a text of this label is like.")
    count: int | None = Field(
        None, ge=0, le=MAX_EXAMPLES, description="Exact number of examples of this label."
    )
    weight: float = Field(1.0, gt=0, description="Share of `n` when `count` is not given.")
    taxonomy: dict[str, Attribute] = Field(
        default_factory=dict, description="Attributes used only for this label (e.g. sub-topics)."
    )


class Templates(ConfigBase):
    """Jinja files under the project's prompts/ directory."""

    system: str | None = Field(None, description="System prompt template file, optional.")
    user: str = Field(description="User prompt template file.")
    assistant: str | None = Field(
        None,
        description="Template of the reply's opening, optional: the model continues it, and the text "
        "starts with it (e.g. 'The {{ product }}' keeps a review about the product, in its own voice).",
    )


IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
ALL = "all"  # the one group of a pipeline without labels
TEXT_STEP = "text"  # the one step of a pipeline given as a `templates:` pair
FIELD_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


class JudgeConfig(ConfigBase):
    """A rubric: each criterion is scored by the likelihood of each allowed score, not by parsing."""

    criteria: dict[str, str] = Field(
        min_length=1, description="Criterion name → what a response with the top score does."
    )
    scale: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5], min_length=2, description="The allowed scores."
    )
    min_score: float | None = Field(
        None, description="Reject `low_judge_score` when the mean over criteria is below this."
    )

    @field_validator("criteria")
    @classmethod
    def _names(cls, criteria: dict[str, str]) -> dict[str, str]:
        for name, text in criteria.items():
            if not re.match(IDENTIFIER, name) or not text.strip():
                raise ValueError(f"criterion {name!r}: needs an identifier name and a description")
        return criteria

    @field_validator("scale")
    @classmethod
    def _scale(cls, scale: list[int]) -> list[int]:
        if any(not 0 <= s <= 9 for s in scale) or len(set(scale)) != len(scale):
            raise ValueError("scale: distinct one-digit scores, e.g. [1, 2, 3, 4, 5]")
        return sorted(scale)


class Step(ConfigBase):
    """One generation step; its output is a variable for the templates of later steps."""

    name: str = Field(pattern=IDENTIFIER, description="Output name, e.g. 'instruction'.")
    templates: Templates
    generation: GenerationParams | None = Field(None, description="Overrides the pipeline's parameters.")
    output: Literal["text", "json"] = Field("text", description="Free text, or a JSON object with `fields`.")
    fields: dict[str, Literal["str", "int", "float", "bool"] | list[str]] = Field(
        default_factory=dict,
        description="JSON fields and their types (output: json); a list of strings allows only those.",
    )
    retries: int = Field(2, ge=0, le=10, description="New tries, with fresh seeds, for unparseable JSON.")
    judge: JudgeConfig | None = Field(None, description="Makes this a rubric step that scores the example.")
    model: ModelConfig | None = Field(None, description="Another model for this step (e.g. a judge).")

    @model_validator(mode="after")
    def _shape(self) -> Step:
        if self.output == "json" and not self.fields:
            raise ValueError(
                f"step {self.name!r}: output json needs `fields` "
                "(name: str|int|float|bool or a list of choices)"
            )
        if self.output == "text" and self.fields:
            raise ValueError(f"step {self.name!r}: `fields` need `output: json`")
        for name, kind in self.fields.items():
            if not re.match(IDENTIFIER, name):
                raise ValueError(f"step {self.name!r}: field {name!r} is not an identifier")
            if isinstance(kind, list) and (not kind or len(set(kind)) != len(kind) or "" in kind):
                raise ValueError(
                    f"step {self.name!r}: field {name!r}: choices must be distinct non-empty strings"
                )
        if self.output == "json" and self.templates.assistant is not None:
            raise ValueError(
                f"step {self.name!r}: a JSON step is decoded to its schema from the first token; "
                "remove `templates.assistant`"
            )
        if self.judge is not None and self.output != "text":
            raise ValueError(f"step {self.name!r}: a judge step scores choices; remove `output: json`")
        return self

    @property
    def outputs(self) -> list[str]:
        """Variables this step gives later steps."""
        if self.judge is not None:
            return [f"judge_{c}" for c in self.judge.criteria]
        return list(self.fields) if self.output == "json" else [self.name]


class ModelConfig(ConfigBase):
    """Which model generates, in which precision and batch size."""

    name: str = Field(
        "default",
        description="'default' (embedded SmolLM2-135M-Instruct), a Hugging Face id, "
        "a local model directory or a .gguf file.",
    )
    gguf_file: str | None = Field(None, description="GGUF file inside `name` when it is a dir.")
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = Field(
        "auto", description="'auto' = bf16 where the CPU/GPU supports it, else fp32."
    )
    batch_size: int = Field(
        128,
        ge=1,
        le=4096,
        description="Rows decoded together; lower it when a large model's KV cache does not fit.",
    )
    backend: Literal["transformers", "openai", "vllm"] = Field(
        "transformers",
        description="'transformers' (in process), 'openai' (any OpenAI-compatible server) or 'vllm' (GPU).",
    )
    base_url: str | None = Field(
        None, description="Server URL for backend openai, e.g. http://127.0.0.1:8000/v1."
    )
    api: Literal["chat", "completions"] = Field(
        "chat", description="Endpoint of backend openai: /chat/completions or /completions."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (never stored)."
    )
    send_top_k: bool = Field(
        False,
        description="Send generation.top_k as `top_k` (vLLM, llama.cpp accept it; OpenAI's API has none).",
    )
    concurrency: int = Field(8, ge=1, le=1024, description="Requests in flight at once (backend openai).")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout in seconds (backend openai).")
    max_retries: int = Field(
        6, ge=0, le=50, description="Retries on 429, 5xx, timeouts and refused connections (backend openai)."
    )

    @model_validator(mode="after")
    def _server(self) -> ModelConfig:
        if self.backend == "openai" and not (self.base_url or "").startswith(("http://", "https://")):
            raise ValueError("base_url: backend openai needs the server URL, e.g. http://127.0.0.1:8000/v1")
        return self


class ExecutorConfig(ConfigBase):
    """Where generation runs: this process, or a Ray actor pool (local Ray or `RAY_ADDRESS`)."""

    kind: Literal["local", "ray"] = Field("local", description="'local' or 'ray' (also `--executor ray`).")
    actors: int = Field(2, ge=1, le=10_000, description="Ray actors, one model each.")
    num_cpus: float = Field(1, gt=0, description="CPUs per actor (also its torch threads).")
    num_gpus: float = Field(0, ge=0, description="GPUs per actor.")


class GenerationParams(ConfigBase):
    """Sampling parameters; all of them are part of each request's fingerprint."""

    max_new_tokens: int = Field(96, ge=1, description="Tokens generated at most per example.")
    temperature: float = Field(0.8, ge=0, le=10, description="0 = greedy decoding.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(50, ge=0, description="Candidates considered per step; 0 = whole vocab.")
    guidance_scale: float = Field(
        1.0,
        ge=1,
        le=10,
        description="Classifier-free guidance toward the label: each request also decodes one row per "
        "other label (its prompt names that label); log-probs = other + scale·(own − other), other "
        "the mean over those rows. 1 = off.",
    )
    guidance_labels: int | None = Field(
        None,
        ge=1,
        description="How many other labels each request is contrasted with (one guidance row each, "
        "drawn with the record's seed); None = all of them, against the mean of their log-probs.",
    )
    guidance_tokens: int | None = Field(
        None,
        ge=1,
        description="Guide only the first this many tokens, then decode the row alone (a text's "
        "label is mostly set by its opening words; the guidance row's cost stops there). None = all.",
    )
    stop: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        max_length=4,
        description='Strings that end a completion (not kept in the text), e.g. ["\\n"] for one line '
        "per text when the reply's opening is a list to continue.",
    )
    length_push: float = Field(
        0.0,
        ge=0,
        le=10,
        description="Hold texts to the length their prompt asks for (`target_words`, drawn from the "
        "seed texts): past it, each extra word adds this much to the logits of sentence ends and the "
        "stop token. Needs seed_examples; transformers backend. 0 = off.",
    )

    def fingerprint_params(self) -> dict[str, object]:
        """The parameters in request fingerprints; guidance and the length push only when on, so
        caches from before the options existed stay valid."""
        off = {"guidance_scale", "guidance_tokens", "guidance_labels"} if self.guidance_scale == 1 else set()
        off |= {"guidance_labels"} if self.guidance_labels is None else set()
        off |= {"guidance_tokens"} if self.guidance_tokens is None else set()
        off |= set() if self.stop else {"stop"}
        return self.model_dump(exclude=off | ({"length_push"} if not self.length_push else set()))


class Pipeline(ConfigBase):
    """A whole pipeline file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Run name.")
    description: str = Field("", description="What the dataset is for; goes into the card.")
    task: Literal["classification", "generation"] = Field(
        "classification", description="'classification' (labels) or 'generation' (steps, no labels)."
    )
    seed: int = Field(0, ge=0, description="Pipeline seed; every random choice derives from it.")
    n: int | None = Field(
        None, ge=1, le=MAX_EXAMPLES, description="Total examples when labels give no counts."
    )
    labels: list[Label] = Field(
        default_factory=list, description="Classes; at least two, or none for a generation task."
    )
    taxonomy: dict[str, Attribute] = Field(
        default_factory=dict, description="Attributes shared by all labels."
    )
    max_per_leaf: int | None = Field(
        None, ge=1, description="Cap on examples of one label at one taxonomy leaf."
    )
    templates: Templates | None = Field(None, description="The prompt of a single-step pipeline.")
    steps: list[Step] = Field(default_factory=list, description="Ordered generation steps.")
    text_field: str | None = Field(
        None, description="Step output that becomes the record text (default: the last text output)."
    )
    prompt_field: str | None = Field(
        None, description="Step output used as the user turn of fine-tuning formats (e.g. 'instruction')."
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    seed_examples: SeedExamples | None = Field(None, description="Real examples for few-shot prompts.")
    generation: GenerationParams = Field(default_factory=GenerationParams)
    quality: QualityConfig = Field(default_factory=QualityConfig)

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[Label]) -> list[Label]:
        names = [lab.name for lab in labels]
        _reject_duplicates(names, "label", "label names must be unique")
        folded: dict[str, str] = {}
        for name in names:
            if name.casefold() in folded:
                raise ValueError(
                    f"labels {folded[name.casefold()]!r} and {name!r} differ only in case: one class or "
                    "two? Rename one (real data's labels would match either)"
                )
            folded[name.casefold()] = name
        return labels

    @model_validator(mode="after")
    def _steps(self) -> Pipeline:
        if self.task == "classification" and len(self.labels) < 2:
            raise ValueError("labels: a classification task needs at least two (or set `task: generation`)")
        if self.task == "generation" and self.labels:
            raise ValueError("labels: a generation task has none (remove them or set `task: classification`)")
        if not self.steps and self.templates is None:
            raise ValueError("templates: give `templates` (one prompt) or `steps`")
        if self.steps and self.templates is not None:
            raise ValueError("templates: with `steps`, each step names its own templates; remove this one")
        guided = self.generation.guidance_scale != 1 or any(
            s.generation is not None and s.generation.guidance_scale != 1 for s in self.steps
        )
        if guided and (self.steps or not self.labels):
            raise ValueError(
                "generation.guidance_scale: guidance contrasts labels, so it needs labels and one "
                "`templates:` pair; set it to 1 here"
            )
        pushed = self.generation.length_push or any(
            s.generation is not None and s.generation.length_push for s in self.steps
        )
        if pushed and self.seed_examples is None:
            raise ValueError(
                "generation.length_push: the target lengths come from the seed texts; add "
                "`seed_examples` or set it to 0"
            )
        taken = set(BASE_VARIABLES)
        for step in self.steps:
            clash = taken & set(step.outputs)
            if clash:
                raise ValueError(f"steps: {step.name!r} outputs {sorted(clash)[0]!r}, already defined")
            taken |= set(step.outputs)
        texts = self.output_names(judges=False)
        for name in ("text_field", "prompt_field"):
            value = getattr(self, name)
            if value is not None and value not in texts:
                raise ValueError(f"{name}: {value!r} is no step output; use one of {texts}")
        if self.steps and self.text_field is None and not texts:
            raise ValueError("steps: at least one step must produce text (a judge step only scores)")
        return self

    @property
    def generation_steps(self) -> list[Step]:
        """What the generation stage runs: the steps, or a `templates:` pair as one step `text`."""
        if self.steps:
            return list(self.steps)
        assert self.templates is not None, "validated: a pipeline has templates or steps"
        return [Step(name=TEXT_STEP, templates=self.templates)]

    def output_names(self, judges: bool = True) -> list[str]:
        return [o for s in self.steps if judges or s.judge is None for o in s.outputs]

    @property
    def record_text(self) -> str:
        """The step output stored as the record's text (default: the last text output)."""
        texts = self.output_names(judges=False)
        return self.text_field or (texts[-1] if texts else TEXT_STEP)

    @property
    def instruction_field(self) -> str | None:
        """The step output that is the user turn of fine-tuning formats (default: the first other text)."""
        others = [o for o in self.output_names(judges=False) if o != self.record_text]
        return self.prompt_field or (others[0] if others else None)

    @property
    def label_names(self) -> list[str]:
        return [lab.name for lab in self.labels] or [ALL]

    @model_validator(mode="after")
    def _counts(self) -> Pipeline:
        given = [lab.count is not None for lab in self.labels]
        if any(given) and not all(given):
            raise ValueError("give `count` for every label or for none (then `n` splits by weight)")
        if not any(given) and self.n is None:
            raise ValueError("set `n` (total examples) or a `count` on every label")
        shared = set(self.taxonomy)
        for lab in self.labels:
            clash = shared & set(lab.taxonomy)
            if clash:
                raise ValueError(f"label {lab.name!r} redefines attribute {sorted(clash)[0]!r}: rename one")
        return self

    def with_overrides(self, n: int | None = None, seed: int | None = None) -> Pipeline:
        """A copy with CLI overrides; `n` replaces per-label counts by a weighted split."""
        update: dict[str, Any] = {}
        if seed is not None:
            update["seed"] = seed
        if n is not None:
            update["n"] = n
            update["labels"] = [lab.model_copy(update={"count": None}) for lab in self.labels]
        data = self.model_dump()
        data.update({k: v for k, v in update.items() if k != "labels"})
        if "labels" in update:
            data["labels"] = [lab.model_dump() for lab in update["labels"]]
        return Pipeline.model_validate(data)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the config."""
        canon = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()


Value.model_rebuild()
Step.model_rebuild()
