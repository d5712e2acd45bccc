"""Models: the registry of the study's configurations, their architectures, and building them.

``registry`` names every configuration once (with the notebook's reference result on
its spec) and never loads Keras; ``custom`` holds the custom CNN architectures,
``pretrained`` the ImageNet-backbone configurations, ``build`` turns a name into a model,
``flops`` counts what a built model costs per image.

May import: :mod:`cnnzoo.core`, :mod:`cnnzoo.storage`; Keras/TensorFlow only inside the
functions of ``build``, ``custom``, ``pretrained`` and ``flops``. Never kfp.
"""
