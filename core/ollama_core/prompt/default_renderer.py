"""The built-in renderer: the Modelfile's Go TEMPLATE, else the GGUF's Jinja chat template."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from ollama_core.descriptors import RenderedPrompt, RenderRequest
from ollama_core.prompt.chat_template import ChatTemplateRenderer
from ollama_core.prompt.go_template import parse_template, render_go_template


@functools.lru_cache(maxsize=16)
def _chat_renderer(template: str, bos: str, eos: str) -> ChatTemplateRenderer:
    return ChatTemplateRenderer(template, bos_token=bos, eos_token=eos)


@functools.lru_cache(maxsize=16)
def _go_template(template: str):  # noqa: ANN202 - GoTemplate, cached per template text
    return parse_template(template)


def think_level(think: bool | str | None) -> str:
    """``low``/``medium``/``high`` for a level string, ``medium`` for ``True``, else empty."""
    if isinstance(think, str):
        return think
    return "medium" if think else ""


def tag_images(messages: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], tuple[str, ...]]:
    """Ollama's image tags: each ``images`` entry becomes ``[img-N]`` (N counting across the chat),
    replacing the next literal ``[img]`` of the message's content or else prefixed to it."""
    tagged: list[Mapping[str, Any]] = []
    tags: list[str] = []
    for message in messages:
        images = message.get("images") or ()
        if not images:
            tagged.append(message)
            continue
        content = str(message.get("content") or "")
        prefix = ""
        for _ in images:
            tag = f"[img-{len(tags)}]"
            tags.append(tag)
            if "[img]" in content:
                content = content.replace("[img]", tag, 1)
            else:
                prefix += tag
        tagged.append({**message, "content": prefix + content})
    return tagged, tuple(tags)


class DefaultRenderer:
    """Renders with the model's own templates, as Ollama does for models without a built-in renderer."""

    def render(self, request: RenderRequest) -> RenderedPrompt:
        """The prompt text (images as ``[img-N]`` tags); ``add_bos`` is false when the template already wrote BOS."""
        messages, tags = tag_images(request.messages)
        rendered = self._render(request, messages)
        return RenderedPrompt(text=rendered.text, add_bos=rendered.add_bos, media=tags)

    def _render(self, request: RenderRequest, messages: list[Mapping[str, Any]]) -> RenderedPrompt:
        think_on = request.think not in (None, False, "")
        if request.go_template:
            prefix = None
            if request.suffix and messages and messages[-1].get("role") == "user":
                prefix = str(messages.pop().get("content") or "")
            text = render_go_template(
                _go_template(request.go_template),
                messages=messages,
                tools=request.tools,
                think=think_on,
                think_level=think_level(request.think),
                is_think_set=request.think is not None,
                prompt=prefix,
                suffix=request.suffix,
            )
            return RenderedPrompt(text=text, add_bos=True)
        if request.chat_template:
            renderer = _chat_renderer(request.chat_template, request.bos_token, request.eos_token)
            extra = {} if request.think is None else {"enable_thinking": think_on}
            if isinstance(request.think, str) and request.think:
                extra["reasoning_effort"] = request.think
            text = renderer.render(
                messages, tools=request.tools, add_generation_prompt=request.add_generation_prompt, **extra
            )
            return RenderedPrompt(text=text, add_bos=not renderer.starts_with_bos(text))
        text = "\n".join(str(m.get("content", "")) for m in messages)
        return RenderedPrompt(text=text, add_bos=True)
