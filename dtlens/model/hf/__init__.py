"""HuggingFace decision transformers as hooked dtlens models.

:func:`dtlens.model.hf.convert.from_hf` (also ``dtlens.from_hf``) turns a
transformers ``DecisionTransformerModel``, or a directory it was saved to with
``save_pretrained``, into a :class:`~dtlens.model.hooked_dt.HookedDecisionTransformer`
whose config has ``token_embedding="huggingface"``; :mod:`dtlens.model.hf.embedding`
holds that token embedding. transformers is only needed for ``from_hf`` itself
(``pip install 'dtlens[hf]'``); the converted model runs without it.
"""
