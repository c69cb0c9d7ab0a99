"""The %%pkmodel language: parse (whitelisted, never eval), Model, code generation."""

from koopnb.model.model import Model
from koopnb.model.parse import parse_spec


def parse_model(text: str, name: str | None = None) -> Model:
    """Parse the text of a ``%%pkmodel`` cell (the language of MODEL_LANGUAGE.md) into a :class:`Model`.

    Raises :class:`koopnb.ModelError` with line and column for any mistake in the text, and for text past
    the limits: 200,000 characters, 2,000 statements, 2,000 numbers, names and operators or 50 levels of
    nesting in one expression, and 100 levels or 5,000 terms once derived quantities are written out.
    """
    return Model(parse_spec(text, name=name))


__all__ = ["Model", "parse_model"]
