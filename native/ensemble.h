/*
 * The per-lane ensemble model: token n-gram head, online log-space bias head, context mixer,
 * match model, confidence skip (ensemble.c; native/NOTES.md, "Ensemble"; codec/FORMAT.md, "Ensemble").
 *
 * The model only makes CDFs and learns from the symbols it is told; coding them is the coder's
 * (coder.h). One step of a lane, on both sides, in this order:
 *
 *   lane_begin(m, &logits)              n-gram prediction, skip decision (logits -> NULL on skip)
 *   per escape group of k raw bytes (encoder: before the token; decoder: when it reads symbol n):
 *     lane_token_cdf(m, logits)           code the escape symbol n_vocab
 *     lane_escape_len_cdf(m, cdf)         code k - 1, then lane_escape_len_update(m, k - 1)
 *     lane_escape_byte_cdf(m, cdf)        code each byte, then lane_escape_byte_update(m, byte)
 *     lane_escape_end(m)
 *   lane_token_cdf(m, logits)           code the token y
 *   lane_token_update(m, logits, y)     update every head
 *
 * Lanes sharing heads (lane_model_new's `share`) must run their steps one after the other: they
 * share the heads and the scratch arrays (so a CDF is valid until the next call on any of them).
 */
#ifndef NACRITH_ENSEMBLE_H
#define NACRITH_ENSEMBLE_H

#include <stddef.h>
#include <stdint.h>

#define ESC_MAXLEN 16 /* bytes per escape group */

typedef struct {
    ptrdiff_t n_vocab;
    int ngram_order;    /* K, 0 = n-gram head off */
    int ngram_bits;     /* log2 slots per order */
    double ngram_kappa; /* lambda = c / (c + kappa) */
    double bias_lr;     /* 0 = bias head off */
    int mixer;          /* 0 = linear (Hedge), 1 = geometric (gradient) */
    double mix_lr;
    double mix_init;    /* initial LLM weight */
    double skip_bits;   /* 0 = never skip */
    int match_min;      /* match model: tokens hashed to find a match (MINLEN), 0 = off */
    int match_bits;     /* log2 slots of its hash table */
    double match_lr;    /* learning rate of its logistic boost */
} lane_params;

typedef struct lane_model lane_model;

/* 1 when every parameter is in range */
int lane_params_valid(const lane_params *p);
/* 1 when a model with parameters p may share the heads of m */
int lane_can_share(const lane_model *m, const lane_params *p);
/* A fresh model, sharing the heads (and scratch) of `share` when not NULL (which must then
   outlive it); NULL when out of memory. */
lane_model *lane_model_new(const lane_params *p, lane_model *share);
void lane_model_free(lane_model *m);

/* n-gram prediction for the next token (once per step; later calls return the same): 1 when the
   n-gram head is confident enough that the LLM is skipped. */
int lane_prepare(lane_model *m);
/* Starts a step: lane_prepare(), then *logits = NULL when skipping. -1 when logits are needed
   (not skipping) but *logits is NULL. */
int lane_begin(lane_model *m, const float **logits);

/* CDF (n_vocab + 2 entries: symbol n_vocab is the escape) of the step's token; NULL for a bad
   distribution. logits: a row of n_vocab, or NULL when skipping. */
const uint32_t *lane_token_cdf(lane_model *m, const float *logits);
/* Learn token y (after lane_token_cdf with the same logits). */
void lane_token_update(lane_model *m, const float *logits, int32_t y);
/* Models of an escape group: its length - 1 (ESC_MAXLEN symbols) and each byte (256 symbols);
   cdf has room for 257 entries. 0, or -1 for a bad model. */
int lane_escape_len_cdf(lane_model *m, uint32_t *cdf);
void lane_escape_len_update(lane_model *m, int sym);
int lane_escape_byte_cdf(lane_model *m, uint32_t *cdf);
void lane_escape_byte_update(lane_model *m, int byte);
void lane_escape_end(lane_model *m);

/* The distribution lane_token_cdf quantises now, as probabilities out[0..n_vocab] (the last: the
   escape), without learning. -2 when logits are needed, -1 for a bad distribution. (tests) */
int lane_distribution(lane_model *m, const float *logits, double *out);
/* Learn y in the n-gram head and the history only, without coding (tests). */
void lane_observe(lane_model *m, int32_t y);

ptrdiff_t lane_n_vocab(const lane_model *m);
long long lane_tokens(const lane_model *m);  /* tokens coded by this lane */
long long lane_skipped(const lane_model *m); /* of which without the LLM */
/* mixer weights (LLM, n-gram) of weight set i, i < lane_n_weight_sets(m) */
int lane_n_weight_sets(const lane_model *m);
void lane_weights(const lane_model *m, int i, double *llm, double *ngram);
size_t lane_memory(const lane_model *m); /* bytes of state */
/* match model statistics of this lane: steps with a prediction, and of those right */
void lane_match_stats(const lane_model *m, long long *predicted, long long *hits);

#endif
