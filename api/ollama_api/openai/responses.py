"""``POST /v1/responses``: the stateless subset of OpenAI's Responses API that Ollama serves.

Input is a string or a list of items (messages with ``input_text``/``input_image``/``output_text``
parts, ``function_call``, ``function_call_output``, ``reasoning``); ``instructions`` become a system
message. ``previous_response_id``, ``conversation``, ``background`` and ``truncation`` are not
honoured (nothing is stored). Streaming uses named events, in the order Ollama emits them.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import msgspec
from litestar import post
from litestar.response import Response

from ollama_api.openai.generation import ChatJob, Outcome, collect, start_chat
from ollama_api.openai.mapping import (
    image_data,
    parse_arguments,
    runtime_options,
    think_from_effort,
    tool_calls_out,
)
from ollama_api.openai.schemas import (
    ContentPartAdded,
    ContentPartDone,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    FunctionCallInput,
    FunctionCallItem,
    FunctionCallOutputInput,
    InputFile,
    InputImage,
    InputItem,
    InputMessage,
    OutputItem,
    OutputItemAdded,
    OutputItemDone,
    OutputMessage,
    OutputText,
    OutputTextDelta,
    OutputTextDone,
    ReasoningInput,
    ReasoningItem,
    ReasoningSettings,
    ReasoningSummaryTextDelta,
    ReasoningSummaryTextDone,
    ResponseCompleted,
    ResponseCreated,
    ResponseFailed,
    ResponseInProgress,
    ResponseObject,
    ResponsesError,
    ResponsesRequest,
    ResponsesTextField,
    ResponsesTextFormat,
    ResponsesUsage,
    StreamEvent,
    SummaryText,
)
from ollama_api.openai.sse import event_frame, event_stream, open_events
from ollama_api.openai.tool_choice import ToolPlan, plan_tools
from ollama_api.wire import json_response
from ollama_core.context import ServerContext
from ollama_core.errors import RequestError
from ollama_core.generation import Chunk, Final

ROLES = {"developer": "system"}


def _text(content: str | list[Any]) -> tuple[str, list[bytes]]:
    """The text and images of a message's content."""
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[bytes] = []
    for part in content:
        if isinstance(part, InputImage):
            if not part.image_url:
                raise RequestError(400, "input_image needs an image_url (file_id is not supported)")
            images.append(image_data(part.image_url))
        elif isinstance(part, InputFile):
            raise RequestError(400, "input_file is not supported")
        else:
            texts.append(part.text)
    return "".join(texts), images


def _items(raw: list[dict[str, Any]]) -> list[InputItem]:
    items: list[InputItem] = []
    for i, item in enumerate(raw):
        if "type" not in item and "role" in item:
            item = {**item, "type": "message"}
        try:
            items.append(msgspec.convert(item, InputItem))
        except msgspec.ValidationError as exc:
            raise RequestError(400, f"input[{i}]: {exc}") from None
    return items


def convert_input(data: ResponsesRequest) -> list[dict[str, Any]]:
    """The conversation the request describes, as native messages."""
    messages: list[dict[str, Any]] = []
    if data.instructions:
        messages.append({"role": "system", "content": data.instructions})
    if isinstance(data.input, str):
        if data.input:
            messages.append({"role": "user", "content": data.input})
        return messages
    thinking = ""
    names: dict[str, str] = {}
    for item in _items(data.input or []):
        if isinstance(item, ReasoningInput):
            thinking = item.encrypted_content or "".join(s.text for s in item.summary)
        elif isinstance(item, InputMessage):
            text, images = _text(item.content)
            message: dict[str, Any] = {"role": ROLES.get(item.role, item.role), "content": text}
            if images:
                message["images"] = images
            if message["role"] == "assistant" and thinking:
                message["thinking"], thinking = thinking, ""
            messages.append(message)
        elif isinstance(item, FunctionCallInput):
            names[item.call_id] = item.name
            call = {"id": item.call_id, "function": {"name": item.name, "arguments": parse_arguments(item.arguments)}}
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
            if thinking:
                messages[-1]["thinking"], thinking = thinking, ""
        elif isinstance(item, FunctionCallOutputInput):
            output = item.output if isinstance(item.output, str) else _text(item.output)[0]
            message = {"role": "tool", "content": output, "tool_call_id": item.call_id}
            if item.call_id in names:
                message["tool_name"] = names[item.call_id]
            messages.append(message)
    if thinking:
        messages.append({"role": "assistant", "content": "", "thinking": thinking})
    return messages


def _tools(data: ResponsesRequest) -> ToolPlan:
    tools: list[dict[str, Any]] = []
    for tool in data.tools or []:
        if tool.type != "function":
            raise RequestError(400, f"tool type '{tool.type}' is not supported")
        function: dict[str, Any] = {"name": tool.name, "description": tool.description or ""}
        if tool.parameters is not None:
            function["parameters"] = tool.parameters
        tools.append({"type": "function", "function": function})
    choice = data.tool_choice
    if isinstance(choice, dict):
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        if choice.get("type") != "function" or not isinstance(name, str):
            raise RequestError(400, "tool_choice must be 'none', 'auto', 'required' or a function")
        return plan_tools(tools, None, name)
    return plan_tools(tools, choice)


def _format(data: ResponsesRequest) -> str | dict[str, Any] | None:
    fmt = data.text.format if data.text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return "json"
    if fmt.type == "json_schema" and fmt.schema is not None:
        return fmt.schema
    raise RequestError(
        400, f"invalid text.format: '{fmt.type}' (expected 'text', 'json_object' or 'json_schema' with a schema)"
    )


def responses_job(data: ResponsesRequest) -> ChatJob:
    """The chat a Responses request asks for, in Ollama's terms."""
    options = runtime_options(options=data.options, num_ctx=data.num_ctx, temperature=data.temperature,
                              top_p=data.top_p, max_tokens=data.max_output_tokens)
    effort = data.reasoning.effort if data.reasoning is not None else None
    return ChatJob(model=data.model, messages=convert_input(data), tools=_tools(data), options=options,
                   think=think_from_effort(effort), format=_format(data), keep_alive=data.keep_alive)


def _usage(final: Final) -> ResponsesUsage:
    return ResponsesUsage(input_tokens=final.prompt_eval_count, output_tokens=final.eval_count,
                          total_tokens=final.prompt_eval_count + final.eval_count)


def _message(item_id: str, text: str, status: str = "completed") -> OutputMessage:
    return OutputMessage(id=item_id, status=status, content=[OutputText(text=text)])


def _reasoning(item_id: str, thinking: str) -> ReasoningItem:
    return ReasoningItem(id=item_id, summary=[SummaryText(text=thinking)], encrypted_content=thinking)


class ResponseBuilder:
    """Builds the response object of one request, echoing what was asked for."""

    def __init__(self, data: ResponsesRequest) -> None:
        self.data = data
        self.id = f"resp_{random.randrange(999999)}"
        self.message_id = f"msg_{random.randrange(999999)}"
        self.created_at = int(time.time())

    def build(
        self,
        status: str,
        output: list[OutputItem],
        usage: ResponsesUsage | None = None,
        error: ResponsesError | None = None,
    ) -> ResponseObject:
        """The response with ``status``; finished ones get ``completed_at``."""
        data = self.data
        reasoning = data.reasoning
        settings = (
            ReasoningSettings(effort=reasoning.effort, summary=reasoning.summary)
            if reasoning is not None and (reasoning.effort or reasoning.summary)
            else None
        )
        text_format = data.text.format if data.text is not None and data.text.format is not None else None
        return ResponseObject(
            id=self.id,
            created_at=self.created_at,
            completed_at=int(time.time()) if status == "completed" else None,
            status=status,
            model=data.model,
            output=output,
            error=error,
            instructions=data.instructions or None,
            tools=list(data.tools or []),
            tool_choice=data.tool_choice if data.tool_choice is not None else "auto",
            truncation=data.truncation or "disabled",
            text=ResponsesTextField(format=text_format or ResponsesTextFormat(type="text")),
            top_p=data.top_p if data.top_p is not None else 1.0,
            temperature=data.temperature if data.temperature is not None else 1.0,
            reasoning=settings,
            usage=usage,
            max_output_tokens=data.max_output_tokens,
            background=data.background,
        )

    def complete(self, outcome: Outcome) -> ResponseObject:
        """The non-streamed response: reasoning, then the message (when there is text or no call), then calls."""
        output: list[OutputItem] = []
        if outcome.thinking:
            output.append(_reasoning(f"rs_{self.id}", outcome.thinking))
        if outcome.content.strip() or not outcome.tool_calls:
            output.append(_message(self.message_id, outcome.content))
        for i, call in enumerate(tool_calls_out(outcome.tool_calls)):
            output.append(FunctionCallItem(id=f"fc_{self.id}_{i}", status="completed", call_id=call.id,
                                           name=call.function.name, arguments=call.function.arguments))
        return self.build("completed", output, _usage(outcome.final))


class EventWriter:
    """Turns a generation into Responses stream events, keeping the state between chunks."""

    def __init__(self, builder: ResponseBuilder) -> None:
        self.builder = builder
        self.sequence = 0
        self.output_index = 0
        self.output: list[OutputItem] = []
        self.reasoning_id: str | None = None
        self.thinking = ""
        self.text_open = False
        self.text = ""
        self.called = False

    def frame(self, event: StreamEvent) -> bytes:
        """One named SSE frame: ``event:`` is the event's ``type``."""
        return event_frame(str(event.__struct_config__.tag), event)

    def _seq(self) -> int:
        """The next ``sequence_number``: every event of the response counts."""
        self.sequence += 1
        return self.sequence - 1

    def start(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress``."""
        response = self.builder.build("in_progress", [])
        return [
            self.frame(ResponseCreated(sequence_number=self._seq(), response=response)),
            self.frame(ResponseInProgress(sequence_number=self._seq(), response=response)),
        ]

    def chunk(self, chunk: Chunk) -> list[bytes]:
        """Events for one parsed chunk: thinking, then tool calls, then text (text after calls is dropped)."""
        frames: list[bytes] = []
        if chunk.thinking:
            frames += self._thinking(chunk.thinking)
        if chunk.tool_calls:
            frames += self._finish_reasoning() + self._finish_text() + self._calls(chunk.tool_calls)
            self.called = True
        elif chunk.content and not self.called:
            frames += self._finish_reasoning() + self._content(chunk.content)
        return frames

    def finish(self, final: Final) -> list[bytes]:
        """Close open items, then ``response.completed`` with the whole output and usage."""
        frames = self._finish_reasoning() + self._finish_text()
        response = self.builder.build("completed", list(self.output), _usage(final))
        return frames + [self.frame(ResponseCompleted(sequence_number=self._seq(), response=response))]

    def failed(self, exc: RequestError) -> bytes:
        """``response.failed`` with the error."""
        code = "server_error" if exc.status >= 500 else "invalid_request"
        response = self.builder.build("failed", list(self.output), error=ResponsesError(code=code, message=exc.message))
        return self.frame(ResponseFailed(sequence_number=self._seq(), response=response))

    def _thinking(self, text: str) -> list[bytes]:
        frames: list[bytes] = []
        if self.reasoning_id is None:
            self.reasoning_id = f"rs_{random.randrange(999999)}"
            item = ReasoningItem(id=self.reasoning_id, summary=[])
            frames.append(self.frame(OutputItemAdded(sequence_number=self._seq(), output_index=self.output_index,
                                                     item=item)))
        self.thinking += text
        frames.append(self.frame(ReasoningSummaryTextDelta(sequence_number=self._seq(), item_id=self.reasoning_id,
                                                           output_index=self.output_index, summary_index=0,
                                                           delta=text)))
        return frames

    def _finish_reasoning(self) -> list[bytes]:
        if self.reasoning_id is None or not self.thinking:
            return []
        item = _reasoning(self.reasoning_id, self.thinking)
        frames = [
            self.frame(ReasoningSummaryTextDone(sequence_number=self._seq(), item_id=self.reasoning_id,
                                                output_index=self.output_index, summary_index=0, text=self.thinking)),
            self.frame(OutputItemDone(sequence_number=self._seq(), output_index=self.output_index, item=item)),
        ]
        self.output.append(item)
        self.output_index += 1
        self.reasoning_id = None
        self.thinking = ""
        return frames

    def _content(self, text: str) -> list[bytes]:
        item_id = self.builder.message_id
        frames: list[bytes] = []
        if not self.text_open:
            self.text_open = True
            frames.append(self.frame(OutputItemAdded(sequence_number=self._seq(), output_index=self.output_index,
                                                     item=OutputMessage(id=item_id, status="in_progress",
                                                                        content=[]))))
            frames.append(self.frame(ContentPartAdded(sequence_number=self._seq(), item_id=item_id,
                                                      output_index=self.output_index, content_index=0,
                                                      part=OutputText(text=""))))
        self.text += text
        frames.append(self.frame(OutputTextDelta(sequence_number=self._seq(), item_id=item_id,
                                                 output_index=self.output_index, content_index=0, delta=text)))
        return frames

    def _finish_text(self) -> list[bytes]:
        if not self.text_open:
            return []
        item_id = self.builder.message_id
        item = _message(item_id, self.text)
        frames = [
            self.frame(OutputTextDone(sequence_number=self._seq(), item_id=item_id, output_index=self.output_index,
                                      content_index=0, text=self.text)),
            self.frame(ContentPartDone(sequence_number=self._seq(), item_id=item_id, output_index=self.output_index,
                                       content_index=0, part=OutputText(text=self.text))),
            self.frame(OutputItemDone(sequence_number=self._seq(), output_index=self.output_index, item=item)),
        ]
        self.output.append(item)
        self.output_index += 1
        self.text_open = False
        return frames

    def _calls(self, calls: list[dict[str, Any]]) -> list[bytes]:
        frames: list[bytes] = []
        for call in tool_calls_out(calls):
            item_id = f"fc_{random.randrange(999999)}_{self.output_index}"
            index = self.output_index
            pending = FunctionCallItem(id=item_id, status="in_progress", call_id=call.id, name=call.function.name,
                                       arguments="")
            done = FunctionCallItem(id=item_id, status="completed", call_id=call.id, name=call.function.name,
                                    arguments=call.function.arguments)
            frames.append(self.frame(OutputItemAdded(sequence_number=self._seq(), output_index=index, item=pending)))
            if call.function.arguments:
                frames.append(self.frame(FunctionCallArgumentsDelta(sequence_number=self._seq(), item_id=item_id,
                                                                    output_index=index,
                                                                    delta=call.function.arguments)))
            frames.append(self.frame(FunctionCallArgumentsDone(sequence_number=self._seq(), item_id=item_id,
                                                               output_index=index, arguments=call.function.arguments)))
            frames.append(self.frame(OutputItemDone(sequence_number=self._seq(), output_index=index, item=done)))
            self.output.append(done)
            self.output_index += 1
        return frames


@post("/responses", status_code=200)
async def responses(data: ResponsesRequest, ctx: ServerContext) -> Response[Any]:
    """A response; with ``stream`` a ``text/event-stream`` of named events ending in ``response.completed``."""
    generation = await start_chat(ctx, responses_job(data))
    builder = ResponseBuilder(data)
    if not data.stream:
        return json_response(builder.complete(await collect(generation.events)))
    events = await open_events(generation.events)
    writer = EventWriter(builder)

    async def frames() -> AsyncGenerator[bytes, None]:
        async with aclosing(events):
            for frame in writer.start():
                yield frame
            async for event in events:
                for frame in writer.finish(event) if isinstance(event, Final) else writer.chunk(event):
                    yield frame

    return event_stream(frames(), writer.failed)


ROUTES = [responses]
