import pytest

from tessera_common.crypto import UnreadableText, new_data_key, open_text, seal_text


def test_sealed_text_opens_only_with_its_key_participant_and_purpose():
    key = new_data_key()
    sealed = seal_text("Ik woon aan de Kerkstraat 12", key, "k_1", "p_alice", "answer")

    assert "Kerkstraat" not in sealed.model_dump_json()
    assert open_text(sealed, key, "p_alice", "answer") == "Ik woon aan de Kerkstraat 12"
    for args in ((new_data_key(), "p_alice", "answer"), (key, "p_bob", "answer"), (key, "p_alice", "idea")):
        with pytest.raises(UnreadableText):
            open_text(sealed, *args)


def test_a_flipped_bit_is_detected():
    import base64

    key = new_data_key()
    sealed = seal_text("hallo", key, "k_1", "p_alice", "answer")
    raw = bytearray(base64.b64decode(sealed.ciphertext))
    raw[0] ^= 1
    tampered = sealed.model_copy(update={"ciphertext": base64.b64encode(bytes(raw)).decode()})
    with pytest.raises(UnreadableText):
        open_text(tampered, key, "p_alice", "answer")


def test_the_same_text_seals_differently_each_time():
    key = new_data_key()
    assert seal_text("ja", key, "k", "p", "a").ciphertext != seal_text("ja", key, "k", "p", "a").ciphertext
