#!/usr/bin/env python3
"""Renders ChatML chat templates with Jinja2 (what transformers'
apply_chat_template runs) into tests/data/chat/templates.json: for each
template, the conversations and the text Jinja makes of them. test_chat
checks that llm::ChatFormat renders the same text, default system turn
included. Needs jinja2 (pip install jinja2)."""
import json
import os

import gguf
import jinja2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

def smollm2_template():
    # As the default model's GGUF stores it: newlines as newline characters.
    r = gguf.GGUFReader(os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode()

smol = smollm2_template()
templates = {
    "smollm2_gguf": smol,
    # tokenizer_config.json style: Jinja's escape sequences, not newline characters.
    "smollm2_escaped": smol.replace("\n", "\\n"),
    "qwen2_style": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                   "{{ '<|im_start|>system\\nYou are Qwen, a \\'helpful\\' assistant.\\tBe brief.<|im_end|>\\n' }}"
                   "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                   "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    "chatml_no_default": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
                         "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    # The system turn is an expression (the first message's content): no literal default.
    "system_expression": "{% if messages[0]['role'] == 'system' %}{{ '<|im_start|>system\\n' + messages[0]['content'] + "
                         "'<|im_end|>\\n' }}{% endif %}{% for message in messages %}{% if message['role'] != 'system' %}"
                         "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                         "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
}
conversations = [
    [{"role": "user", "content": "What is a GGUF file?"}],
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Bonjour !"}, {"role": "user", "content": "Ça va ?"}],
]
env = jinja2.Environment()
out = []
for name, t in templates.items():
    cases = []
    for conv in conversations:
        cases.append({"messages": conv, "text": env.from_string(t).render(messages=conv, add_generation_prompt=True)})
    out.append({"name": name, "template": t, "cases": cases})
with open(os.path.join(ROOT, "tests/data/chat/templates.json"), "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
    f.write("\n")
print("wrote tests/data/chat/templates.json")
