/* cascade.h - is a cheap model's answer good enough to keep, or should a
 * cascade router (FrugalGPT, AutoMix) escalate to the next model?
 *
 * Model-free checks of a canonical (OpenAI-shaped) chat.completion against
 * the request that asked for it: no text and no tool call; cut by the
 * length limit when the client set none; a refusal (message.refusal, or a
 * refusal or "I don't know" opening); JSON mode answered with text that is
 * not a JSON object; tool-call arguments that are not JSON. A judge model's
 * score would catch wrong answers these cannot; they catch the cheap
 * model's visible failures at no cost. */
#ifndef AH_ROUTE_CASCADE_H
#define AH_ROUTE_CASCADE_H

#include <jansson.h>

/* NULL when answer passes every check; else a static name of the first
 * check it fails ("empty", "truncated", "refusal", "uncertain",
 * "invalid-json", "invalid-tool-arguments"). Pure and thread-safe. */
const char *ah_cascade_check(const json_t *request, const json_t *answer);

#endif
