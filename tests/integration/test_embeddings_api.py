"""POST /v1/embeddings with the official `openai` client against a running `fathom serve`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from service.auth.keys import KeyStore
from service.settings import Settings
from tests.conftest import MODELS
from tests.integration.rerank_app import new_key
from tests.integration.search_app import search_settings
from tests.integration.served import served, served_config

MODEL = Settings().embedding.model
REFERENCES = json.loads((MODELS / "all-MiniLM-L6-v2" / "reference_embeddings.json").read_text())["sentences"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    folder = tmp_path_factory.mktemp("embeddings")
    data = folder / "data"
    settings = search_settings(data)
    with served(served_config(folder)) as url:
        yield url, settings


def client(server: tuple[str, Settings], key: str) -> openai.OpenAI:
    url, _ = server
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_vectors_match_the_reference_model_in_both_encodings(server: tuple[str, Settings]) -> None:
    openai_client = client(server, new_key(server[1], "embedder"))
    texts = [reference["text"] for reference in REFERENCES[:4]]
    # Without encoding_format the client asks for base64 and decodes it; then floats as JSON.
    for extra in ({}, {"encoding_format": "float"}):
        response = openai_client.embeddings.create(model=MODEL, input=texts, **extra)  # type: ignore[call-overload]
        assert response.model == MODEL and [item.index for item in response.data] == [0, 1, 2, 3]
        for item, reference in zip(response.data, REFERENCES, strict=False):
            assert np.allclose(item.embedding, reference["embedding"], atol=1e-4)
        assert response.usage.prompt_tokens == response.usage.total_tokens > len(texts) * 2


def test_one_string_input(server: tuple[str, Settings]) -> None:
    response = client(server, new_key(server[1], "single")).embeddings.create(
        model=MODEL, input=REFERENCES[0]["text"]
    )
    [item] = response.data
    assert np.allclose(item.embedding, REFERENCES[0]["embedding"], atol=1e-4)


def test_bad_requests_say_what_to_fix(server: tuple[str, Settings]) -> None:
    openai_client = client(server, new_key(server[1], "careless"))
    with pytest.raises(openai.BadRequestError, match="this server embeds with"):
        openai_client.embeddings.create(model="text-embedding-3-small", input="hello")
    with pytest.raises(openai.BadRequestError, match=r"input\[1\] is \d+ tokens long"):
        openai_client.embeddings.create(model=MODEL, input=["short", "word " * 400])
    with pytest.raises(openai.BadRequestError, match="token ids are not accepted"):
        openai_client.embeddings.create(model=MODEL, input=[[101, 102]])
    with pytest.raises(openai.BadRequestError, match=r"input\[0\] is empty"):
        openai_client.embeddings.create(model=MODEL, input=[""])


def test_keys_and_billing(server: tuple[str, Settings]) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(server, "fth_not-a-key").embeddings.create(model=MODEL, input="hello")
    settings = server[1]
    openai_client = client(server, new_key(settings, "metered", quota=3))
    openai_client.embeddings.create(model=MODEL, input=["a text"] * 150)  # two units: 100 texts a unit
    with pytest.raises(openai.APIStatusError) as refused:
        openai_client.embeddings.create(model=MODEL, input=["a text"] * 101)
    assert refused.value.status_code == 402
    store = KeyStore.in_data_dir(settings.data_path)
    try:
        [used] = [key.used for key in store.list() if key.name == "metered"]
    finally:
        store.close()
    assert used == 2
