"""Wire types of the OpenAI-compatible endpoints, requests and responses.

Requests accept, besides OpenAI's own fields, three that OpenAI lacks: ``options`` (Ollama runtime
options such as ``num_ctx``), a top-level ``num_ctx`` and ``keep_alive``. Unknown fields are ignored.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from ollama_core.generation import Logprob

KeepAlive = str | float | None
Stop = str | list[str] | None


class Error(msgspec.Struct):
    """OpenAI's error object; ``param`` and ``code`` are always present (``null`` here)."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(msgspec.Struct):
    """The error body of every ``/v1`` route."""

    error: Error


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class Reasoning(msgspec.Struct, omit_defaults=True):
    effort: str | None = None
    summary: str | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


# Chat completions: request.


class TextPart(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class ImageURL(msgspec.Struct):
    url: str
    detail: str | None = None


class ImageURLPart(msgspec.Struct, tag_field="type", tag="image_url"):
    image_url: str | ImageURL


class InputAudio(msgspec.Struct):
    data: str
    format: str | None = None


class InputAudioPart(msgspec.Struct, tag_field="type", tag="input_audio"):
    input_audio: InputAudio


ContentPart = TextPart | ImageURLPart | InputAudioPart


class FunctionCall(msgspec.Struct):
    """A call as a client sends it back: ``arguments`` is a JSON string (an object is accepted too)."""

    name: str
    arguments: str | dict[str, Any] = ""


class ToolCall(msgspec.Struct):
    function: FunctionCall
    id: str = ""
    type: str = "function"
    index: int | None = None


class Message(msgspec.Struct):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(msgspec.Struct, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct):
    function: FunctionDefinition
    type: str = "function"


class NamedFunction(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct):
    """``{"type": "function", "function": {"name": ...}}``."""

    function: NamedFunction
    type: str = "function"


class JSONSchemaFormat(msgspec.Struct):
    name: str | None = None
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct):
    type: str
    json_schema: JSONSchemaFormat | None = None


class GenerationRequest(msgspec.Struct):
    """The fields chat and legacy completions share: sampling, streaming, and Ollama's extras
    (``options`` and ``num_ctx`` for runtime options such as the context length, ``keep_alive``)."""

    model: str = ""
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: Stop = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    n: int | None = None
    user: str | None = None
    options: dict[str, Any] | None = None
    num_ctx: int | None = None
    keep_alive: KeepAlive = None


class ChatCompletionRequest(GenerationRequest):
    messages: list[Message] = []
    max_completion_tokens: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: str | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    reasoning: Reasoning | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


# Chat completions: response.


class FunctionCallOut(msgspec.Struct):
    name: str
    arguments: str


class ToolCallOut(msgspec.Struct):
    """A tool call as ``/v1`` answers it: ``arguments`` is a JSON string."""

    id: str
    index: int
    function: FunctionCallOut
    type: str = "function"


class ChatMessageOut(msgspec.Struct, omit_defaults=True):
    role: str
    content: str
    reasoning: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class ChoiceLogprobs(msgspec.Struct):
    """The log probabilities of a choice's content tokens."""

    content: list[Logprob]


class Choice(msgspec.Struct):
    index: int
    message: ChatMessageOut
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    object: str = "chat.completion"
    system_fingerprint: str = "fp_ollama"


class Delta(msgspec.Struct, omit_defaults=True):
    """A streamed change; the finish chunk carries an empty one (``{}``)."""

    role: str | UnsetType = UNSET
    content: str | UnsetType = UNSET
    reasoning: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: str = "chat.completion.chunk"
    system_fingerprint: str = "fp_ollama"
    usage: Usage | UnsetType = UNSET


# Legacy completions.


class CompletionRequest(GenerationRequest):
    """``prompt`` is a string, a list of strings, a token list or a list of token lists."""

    prompt: str | list[Any] = ""
    suffix: str | None = None
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None


class CompletionLogprobs(msgspec.Struct):
    """Legacy completion log probabilities: per token its text, log probability, the most likely
    alternatives (text to log probability) and where its text starts in the choice's text."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(msgspec.Struct):
    text: str
    index: int
    finish_reason: str | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    object: str = "text_completion"
    system_fingerprint: str = "fp_ollama"
    usage: Usage | UnsetType = UNSET


# Embeddings.


class EmbeddingRequest(msgspec.Struct):
    """``input`` is a string, a list of strings, a token list or a list of token lists."""

    model: str = ""
    input: str | list[Any] | None = None
    dimensions: int | None = None
    encoding_format: str | None = None
    user: str | None = None
    truncate: bool = True
    options: dict[str, Any] | None = None
    num_ctx: int | None = None
    keep_alive: KeepAlive = None


class Embedding(msgspec.Struct):
    """One vector: a list of floats, or base64 of little-endian float32 values."""

    embedding: list[float] | str
    index: int
    object: str = "embedding"


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    object: str = "list"


# Models.


class ModelObject(msgspec.Struct):
    """A model; ``context_length`` (trained) and ``capabilities`` go beyond OpenAI's fields."""

    id: str
    created: int
    owned_by: str
    object: str = "model"
    context_length: int | UnsetType = UNSET
    capabilities: list[str] | UnsetType = UNSET


class ModelList(msgspec.Struct):
    data: list[ModelObject]
    object: str = "list"


# Responses: request.


class InputText(msgspec.Struct, tag_field="type", tag="input_text"):
    text: str


class InputImage(msgspec.Struct, tag_field="type", tag="input_image"):
    image_url: str | None = None
    file_id: str | None = None
    detail: str = "auto"


class InputFile(msgspec.Struct, tag_field="type", tag="input_file"):
    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None


class OutputTextInput(msgspec.Struct, tag_field="type", tag="output_text"):
    text: str


InputContent = InputText | InputImage | InputFile | OutputTextInput


class InputMessage(msgspec.Struct, tag_field="type", tag="message"):
    role: str
    content: str | list[InputContent] = ""
    id: str | None = None
    status: str | None = None


class FunctionCallInput(msgspec.Struct, tag_field="type", tag="function_call"):
    call_id: str
    name: str
    arguments: str = ""
    id: str | None = None
    status: str | None = None


class FunctionCallOutputInput(msgspec.Struct, tag_field="type", tag="function_call_output"):
    call_id: str
    output: str | list[InputContent] = ""
    id: str | None = None
    status: str | None = None


class SummaryText(msgspec.Struct, tag_field="type", tag="summary_text"):
    text: str


class ReasoningInput(msgspec.Struct, tag_field="type", tag="reasoning"):
    id: str | None = None
    summary: list[SummaryText] = []
    encrypted_content: str | None = None


InputItem = InputMessage | FunctionCallInput | FunctionCallOutputInput | ReasoningInput


class ResponsesTool(msgspec.Struct):
    """A tool with flattened ``name``/``description``/``parameters`` (non-function types are refused)."""

    type: str
    name: str = ""
    description: str | None = None
    strict: bool | None = None
    parameters: dict[str, Any] | None = None


class ResponsesTextFormat(msgspec.Struct, omit_defaults=True):
    type: str
    name: str | None = None
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class ResponsesText(msgspec.Struct):
    format: ResponsesTextFormat | None = None


class ResponsesRequest(msgspec.Struct):
    """Input items are decoded one by one (a ``{"role", "content"}`` item without ``type`` is a message)."""

    model: str = ""
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: Reasoning | None = None
    text: ResponsesText | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    truncation: str | None = None
    background: bool = False
    previous_response_id: str | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    num_ctx: int | None = None
    keep_alive: KeepAlive = None


# Responses: response.


class OutputText(msgspec.Struct, tag_field="type", tag="output_text"):
    text: str
    annotations: list[Any] = []
    logprobs: list[Any] = []


class OutputMessage(msgspec.Struct, tag_field="type", tag="message"):
    id: str
    status: str
    content: list[OutputText]
    role: str = "assistant"


class FunctionCallItem(msgspec.Struct, tag_field="type", tag="function_call"):
    id: str
    status: str
    call_id: str
    name: str
    arguments: str


class ReasoningItem(msgspec.Struct, tag_field="type", tag="reasoning"):
    id: str
    summary: list[SummaryText]
    encrypted_content: str | UnsetType = UNSET


OutputItem = OutputMessage | FunctionCallItem | ReasoningItem


class InputTokensDetails(msgspec.Struct):
    cached_tokens: int = 0


class OutputTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ResponsesUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails = msgspec.field(default_factory=InputTokensDetails)
    output_tokens_details: OutputTokensDetails = msgspec.field(default_factory=OutputTokensDetails)


class ResponsesError(msgspec.Struct):
    code: str
    message: str


class ResponsesTextField(msgspec.Struct):
    format: ResponsesTextFormat


class ReasoningSettings(msgspec.Struct):
    effort: str | None = None
    summary: str | None = None


class ResponseObject(msgspec.Struct):
    """The response as a whole: what was asked for (echoed) and what was produced."""

    id: str
    created_at: int
    status: str
    model: str
    output: list[OutputItem]
    tools: list[ResponsesTool]
    text: ResponsesTextField
    top_p: float
    temperature: float
    object: str = "response"
    completed_at: int | None = None
    incomplete_details: dict[str, str] | None = None
    previous_response_id: str | None = None
    instructions: str | None = None
    error: ResponsesError | None = None
    tool_choice: str | dict[str, Any] = "auto"
    truncation: str = "disabled"
    parallel_tool_calls: bool = True
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int = 0
    reasoning: ReasoningSettings | None = None
    usage: ResponsesUsage | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    store: bool = False
    background: bool = False
    service_tier: str = "default"
    metadata: dict[str, Any] = {}
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None


# Responses: stream events (``event: <type>`` plus the same ``type`` in the data).


class ResponseCreated(msgspec.Struct, tag_field="type", tag="response.created"):
    sequence_number: int
    response: ResponseObject


class ResponseInProgress(msgspec.Struct, tag_field="type", tag="response.in_progress"):
    sequence_number: int
    response: ResponseObject


class ResponseCompleted(msgspec.Struct, tag_field="type", tag="response.completed"):
    sequence_number: int
    response: ResponseObject


class ResponseFailed(msgspec.Struct, tag_field="type", tag="response.failed"):
    sequence_number: int
    response: ResponseObject


class OutputItemAdded(msgspec.Struct, tag_field="type", tag="response.output_item.added"):
    sequence_number: int
    output_index: int
    item: OutputItem


class OutputItemDone(msgspec.Struct, tag_field="type", tag="response.output_item.done"):
    sequence_number: int
    output_index: int
    item: OutputItem


class ContentPartAdded(msgspec.Struct, tag_field="type", tag="response.content_part.added"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class ContentPartDone(msgspec.Struct, tag_field="type", tag="response.content_part.done"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class OutputTextDelta(msgspec.Struct, tag_field="type", tag="response.output_text.delta"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = []


class OutputTextDone(msgspec.Struct, tag_field="type", tag="response.output_text.done"):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = []


class ReasoningSummaryTextDelta(msgspec.Struct, tag_field="type", tag="response.reasoning_summary_text.delta"):
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class ReasoningSummaryTextDone(msgspec.Struct, tag_field="type", tag="response.reasoning_summary_text.done"):
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    text: str


class FunctionCallArgumentsDelta(msgspec.Struct, tag_field="type", tag="response.function_call_arguments.delta"):
    sequence_number: int
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDone(msgspec.Struct, tag_field="type", tag="response.function_call_arguments.done"):
    sequence_number: int
    item_id: str
    output_index: int
    arguments: str


StreamEvent = (
    ResponseCreated
    | ResponseInProgress
    | ResponseCompleted
    | ResponseFailed
    | OutputItemAdded
    | OutputItemDone
    | ContentPartAdded
    | ContentPartDone
    | OutputTextDelta
    | OutputTextDone
    | ReasoningSummaryTextDelta
    | ReasoningSummaryTextDone
    | FunctionCallArgumentsDelta
    | FunctionCallArgumentsDone
)
