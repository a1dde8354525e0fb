"""The built-in renderer: the Modelfile's Go TEMPLATE, else the GGUF's Jinja chat template."""

from __future__ import annotations

import functools

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


class DefaultRenderer:
    """Renders with the model's own templates, as Ollama does for models without a built-in renderer."""

    def render(self, request: RenderRequest) -> RenderedPrompt:
        """The prompt text; ``add_bos`` is false when the template already wrote BOS."""
        think_on = request.think not in (None, False, "")
        if request.go_template:
            messages = list(request.messages)
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
                request.messages, tools=request.tools, add_generation_prompt=request.add_generation_prompt, **extra
            )
            return RenderedPrompt(text=text, add_bos=not renderer.starts_with_bos(text))
        text = "\n".join(str(m.get("content", "")) for m in request.messages)
        return RenderedPrompt(text=text, add_bos=True)
