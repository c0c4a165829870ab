"""Prompt templates rendered in a Jinja sandbox with StrictUndefined.

Templates come from users and shared pipelines, so they render in `SandboxedEnvironment`
(no attribute escapes, no imports, no file access) and may only be loaded from the project's
prompt directories. Variables are checked against the taxonomy before any model loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2 import meta
from jinja2.sandbox import SecurityError

from textsynth.config import BASE_VARIABLES, Pipeline, Templates
from textsynth.errors import TemplateError
from textsynth.sandbox import PromptLoader, Sandbox
from textsynth.seeds import SeedPool
from textsynth.taxonomy import PlannedExample, attribute_order, derived_seed
from textsynth.validation import record_fold

MATERIAL_WORDS = 20  # an inserted value this long is material to work from, not instruction
MASK = "\n\n"  # what masked material leaves: a break no word run or sentence crosses


def prompt_dirs(pipeline_path: Path | None) -> list[Path]:
    """Where templates are looked up: prompts/ beside the pipeline file or one level up."""
    base = pipeline_path.resolve().parent if pipeline_path else Path.cwd()
    found = [d for d in (base / "prompts", base.parent / "prompts") if d.is_dir()]
    return found or [Path.cwd() / "prompts"]


def _guarded(ast: jinja2.nodes.Template) -> set[str]:
    """Variables the template tests with `is defined` / `is undefined`: it expects them to be
    missing for some requests, and rendering still names any it uses unguarded."""
    return {
        test.node.name
        for test in ast.find_all(jinja2.nodes.Test)
        if test.name in ("defined", "undefined") and isinstance(test.node, jinja2.nodes.Name)
    }


def available_variables(pipeline: Pipeline) -> set[str]:
    """Every variable some request can provide to a template (no label variables without labels)."""
    base = set(BASE_VARIABLES) if pipeline.labels else {"task_description"}
    seeded = {"examples", "target_words"} if pipeline.seed_examples else set()
    return base | seeded | set(attribute_order(pipeline))


@dataclass(frozen=True)
class Template:
    name: str
    source: str
    sha: str
    compiled: jinja2.Template


class PromptTemplates:
    """The system, user and reply-opening templates of a pipeline or of one step, loaded and checked
    once.

    `outputs` are variables earlier steps provide; `later` are those of later steps, named in the
    error when a template uses one.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        dirs: list[Path],
        templates: Templates | None = None,
        outputs: tuple[str, ...] = (),
        later: tuple[str, ...] = (),
        seeds: SeedPool | None = None,
    ) -> None:
        # An included template is resolved by the same loader, so it cannot leave `dirs` either,
        # not even through a symlink; the sandbox bounds recursion, range(), `*`, `**` and output.
        self.pipeline = pipeline
        self.dirs = dirs
        self.seeds = seeds
        self.masking: set[str] | None = None  # while rendering an instruction: the texts kept whole
        self.env = Sandbox(
            loader=PromptLoader(dirs),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            finalize=self._finalize,
        )
        allowed = available_variables(pipeline) | set(outputs)
        chosen = templates or pipeline.templates
        assert chosen is not None, "validated: a pipeline has templates or steps"
        names = {"system": chosen.system, "user": chosen.user, "assistant": chosen.assistant}
        self.templates = {
            role: self._load(name, allowed, set(later)) for role, name in names.items() if name is not None
        }

    def _finalize(self, value: object) -> object:
        """Every `{{ }}` value passes here; while masking, long material becomes a break."""
        if (
            self.masking is not None
            and isinstance(value, str)
            and value not in self.masking
            and len(value.split()) >= MATERIAL_WORDS
        ):
            return MASK
        return value

    def _load(self, name: str, allowed: set[str], later: set[str]) -> Template:
        where = ", ".join(str(d) for d in self.dirs)
        try:
            source, filename, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        except jinja2.TemplateNotFound:
            raise TemplateError(
                f"templates: {name!r} not found in {where} (create it there or fix the name; "
                "paths may not leave the prompt directories)"
            ) from None
        except UnicodeDecodeError as exc:
            raise TemplateError(f"{name}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
        try:
            ast = self.env.parse(source, name=name, filename=filename)
            compiled = self.env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{filename}:{exc.lineno}: template syntax error: {exc.message}") from None
        unknown = sorted(meta.find_undeclared_variables(ast) - allowed - _guarded(ast))
        if unknown and unknown[0] in later:
            raise TemplateError(
                f"{filename}: uses {unknown[0]!r}, which a later step produces (move that step before "
                "this one)"
            )
        if unknown:
            raise TemplateError(
                f"{filename}: undefined variable {unknown[0]!r}; available: "
                f"{', '.join(sorted(allowed))} (add it to the taxonomy or fix the template)"
            )
        return Template(name, source, hashlib.sha256(source.encode()).hexdigest(), compiled)

    @property
    def key(self) -> str:
        """Identity of the templates in record ids: their names, not their text."""
        return "+".join(t.name for t in self.templates.values())

    @property
    def shas(self) -> dict[str, str]:
        return {t.name: t.sha for t in self.templates.values()}

    def exemplars(self, example: PlannedExample) -> list[int]:
        """Rows of the seed examples shown to this record: its label's, drawn with its own seed."""
        config = self.pipeline.seed_examples
        if self.seeds is None or config is None:
            return []
        seed, fold = derived_seed(example.seed, "exemplars"), record_fold(example.id)
        return self.seeds.exemplars(example.label, seed, config.k, fold, example.exemplar_rows)

    def target_words(self, example: PlannedExample) -> int | None:
        """The length this record's prompt asks for: one seed text's, drawn with its own seed."""
        if self.seeds is None:
            return None
        return self.seeds.target_words(derived_seed(example.seed, "length"))

    def context(self, example: PlannedExample) -> dict[str, object]:
        ctx: dict[str, object] = {"task_description": self.pipeline.description, **example.attributes}
        if self.seeds is not None:
            ctx["examples"] = [self.seeds.texts[i] for i in self.exemplars(example)]
            ctx["target_words"] = self.target_words(example)
        label = next((lab for lab in self.pipeline.labels if lab.name == example.label), None)
        if label is not None:
            ctx.update(
                label=label.name,
                label_description=label.description,
                labels=[lab.name for lab in self.pipeline.labels],
            )
        return ctx

    def render_negatives(
        self, example: PlannedExample, count: int | None = None, extra: dict[str, object] | None = None
    ) -> tuple[list[dict[str, str]], ...]:
        """The guidance prompts: this request rendered for each label it is contrasted with (their
        exemplars included): the loop's choice, else every other label, or `count` of them drawn
        with the record's seed."""
        others = [lab.name for lab in self.pipeline.labels if lab.name != example.label]
        if example.contrast:
            others = [o for o in others if o in example.contrast]
        elif count is not None and count < len(others):
            rng = random.Random(derived_seed(example.seed, "guidance"))
            others = sorted(rng.sample(others, count), key=others.index)
        return tuple(self.render(dataclasses.replace(example, label=other), extra) for other in others)

    def instruction(self, example: PlannedExample, extra: dict[str, object] | None = None) -> str:
        """The user message with long inserted material (a passage, an earlier step's output)
        masked: what the echo filter compares a text with, since quoting material is often the
        task (an answer from its passage) while repeating the instruction never is. Seed examples
        stay: copying one is never the task."""
        self.masking = {self.seeds.texts[i] for i in self.exemplars(example)} if self.seeds else set()
        try:
            return next(m["content"] for m in self.render(example, extra) if m["role"] == "user")
        finally:
            self.masking = None

    def render(self, example: PlannedExample, extra: dict[str, object] | None = None) -> list[dict[str, str]]:
        """Chat messages for one planned example; `extra` adds earlier steps' outputs."""
        ctx = {**self.context(example), **(extra or {})}
        messages = []
        for role, template in self.templates.items():
            try:
                text = template.compiled.render(ctx).strip()
            except SecurityError as exc:
                raise TemplateError(f"{template.name}: blocked by the template sandbox: {exc}") from None
            except jinja2.TemplateNotFound as exc:
                raise TemplateError(
                    f"{template.name}: includes {exc.name!r}, which is not in the prompt directories "
                    "(templates may only include files under prompts/)"
                ) from None
            except jinja2.UndefinedError as exc:
                raise TemplateError(
                    f"{template.name}: {exc.message} for label {example.label!r} at leaf "
                    f"{example.leaf!r} (guard it with `is defined` or add it to every leaf)"
                ) from None
            if role != "assistant" or text:  # an opening that renders empty is no opening
                messages.append({"role": role, "content": text})
        return messages
