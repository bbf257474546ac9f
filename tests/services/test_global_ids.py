"""Global IDs: URL-safe base64 of "Type:pk" without padding, and back."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from services.global_ids import decode_id, encode_id

TYPE_NAMES = st.text(alphabet=st.characters(min_codepoint=65, max_codepoint=90), min_size=1)


@given(TYPE_NAMES, st.integers(min_value=0, max_value=10**18 - 1))
def test_an_id_is_urlsafe_base64_of_type_and_key_and_decodes_back(type_name: str, pk: int) -> None:
    encoded = encode_id(type_name, pk)

    assert encoded == base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")
    assert decode_id(encoded) == (type_name, pk)
