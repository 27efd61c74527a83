/* Chat templates: each family's text for one conversation, against the
 * formats the families publish (the model cards' and Meta's reference
 * code's spelling, as also pinned by llama.cpp's template tests), the
 * recognition of Jinja templates by their markers, and bad input. */
#include <openxpu/openxpu.h>
#include <stdlib.h>
#include <string.h>

#include "ox_test.h"

static const ox_chat_message CONVERSATION[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
};

static const struct {
    const char *name, *expected;
} CASES[] = {
    {"chatml", "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
               "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n"
               "<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n"},
    {"gemma", "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
              "<start_of_turn>model\nHi there<end_of_turn>\n"
              "<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\n"},
    {"llama3", "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant"
               "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"llama2", "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there "
               "</s><s>[INST] Who are you [/INST]"},
    {"zephyr", "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n<|assistant|>\n"
               "Hi there</s>\n<|user|>\nWho are you</s>\n<|assistant|>\n"},
};

OX_TEST(each_family_formats_a_conversation)
{
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char buf[1024];
        size_t len = 0;
        ASSERT_OK(NULL, ox_chat_apply(NULL, CASES[i].name, CONVERSATION, 4, true, buf,
                                      sizeof buf, &len));
        ASSERT_STR_EQ(buf, CASES[i].expected);
        ASSERT_EQ(len, strlen(CASES[i].expected));
        ASSERT(ox_chat_end_of_turn(CASES[i].name) != NULL);
    }
    ASSERT_STR_EQ(ox_chat_end_of_turn("gemma"), "<end_of_turn>");
    ASSERT_STR_EQ(ox_chat_end_of_turn("chatml"), "<|im_end|>");
    ASSERT_STR_EQ(ox_chat_end_of_turn("llama3"), "<|eot_id|>");
}

OX_TEST(the_formatted_history_is_a_prefix_of_the_next_turn)
{
    /* What ox run relies on to evaluate only the new text of each turn. */
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char before[1024], after[1024];
        size_t a = 0, b = 0;
        ASSERT_OK(NULL, ox_chat_apply(NULL, CASES[i].name, CONVERSATION, 3, false, before,
                                      sizeof before, &a));
        ASSERT_OK(NULL, ox_chat_apply(NULL, CASES[i].name, CONVERSATION, 4, true, after,
                                      sizeof after, &b));
        ASSERT_MSG(b > a && strncmp(before, after, a) == 0, "%s: history is not a prefix",
                   CASES[i].name);
    }
}

OX_TEST(jinja_templates_are_recognised_by_their_markers)
{
    static const struct {
        const char *jinja, *family;
    } T[] = {
        {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
         "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}", "chatml"},
        {"{{ bos_token }}{% for message in loop_messages %}{{ '<start_of_turn>' + role + '\\n' "
         "}}{% endfor %}", "gemma"},
        {"{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}", "llama3"},
        {"{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + eos_token }}"
         "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' }}{% endif %}", "zephyr"},
        {"{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}", "llama2"},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        const char *name = ox_chat_template_detect(T[i].jinja, strlen(T[i].jinja));
        ASSERT_MSG(name && strcmp(name, T[i].family) == 0, "template %zu: %s, want %s", i,
                   name ? name : "(none)", T[i].family);
    }
    ASSERT(ox_chat_template_detect("{{ messages }}", 14) == NULL);
    ASSERT(ox_chat_template_detect(NULL, 0) == NULL);
    ASSERT(ox_chat_template_name(NULL) == NULL);
}

OX_TEST(bad_input_is_refused_with_a_message)
{
    ox_context *ctx;
    ox_context_options o = {.struct_size = sizeof o, .flags = OX_CONTEXT_NO_PLUGINS,
                            .log_level = OX_LOG_OFF};
    ASSERT_OK(NULL, ox_context_create(&o, &ctx));
    char buf[16];
    size_t len = 0;
    ASSERT_EQ(ox_chat_apply(ctx, "vicuna", CONVERSATION, 4, true, buf, sizeof buf, &len),
              OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "unknown chat template 'vicuna'");
    const ox_chat_message bad[] = {{"tool", "x"}};
    ASSERT_EQ(ox_chat_apply(ctx, "chatml", bad, 1, true, buf, sizeof buf, &len), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "role 'tool'");
    /* too small: the length needed comes back, the buffer stays a string */
    ASSERT_EQ(ox_chat_apply(ctx, "chatml", CONVERSATION, 4, true, buf, sizeof buf, &len),
              OX_ERR_OUT_OF_RANGE);
    ASSERT_EQ(len, strlen(CASES[0].expected));
    ASSERT_EQ(strlen(buf), sizeof buf - 1);
    /* sizing call: no buffer, the length comes back */
    ASSERT_EQ(ox_chat_apply(ctx, "gemma", CONVERSATION, 4, true, NULL, 0, &len),
              OX_ERR_OUT_OF_RANGE);
    ASSERT_EQ(len, strlen(CASES[1].expected));
    ox_context_free(ctx);
}

OX_TEST_MAIN(each_family_formats_a_conversation, the_formatted_history_is_a_prefix_of_the_next_turn,
             jinja_templates_are_recognised_by_their_markers, bad_input_is_refused_with_a_message)
