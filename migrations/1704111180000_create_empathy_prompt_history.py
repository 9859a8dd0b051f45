"""Every version of the empathy-evaluation prompt, seeded with a default LLM-as-judge prompt.

The application fills ``{patient_context}`` and ``{user_text}`` in, so the prompt holds no other braces.
The JavaScript migration's ``ON CONFLICT DO NOTHING`` had no unique key to act on; here the default is
inserted only into an empty table, so re-running ``up`` neither duplicates it nor brings it back over
prompts an administrator saved since.
"""

from lambda_db_setup.builder import MigrationBuilder, func

SQUAWK_IGNORE = {
    "prefer-timestamp-tz": "the deployed schema has timestamp; moving to timestamptz is a migration of its own",
}

DEFAULT_EMPATHY_PROMPT = """\
You are an experienced clinical communication educator acting as an impartial judge. A health-professions \
student is practising a conversation with a simulated patient. Evaluate how empathetic the student's \
latest message is.

Patient context:
{patient_context}

Student's message:
{user_text}

Judge only the student's message, in the light of the patient context. Rate each dimension from 1 (poor) \
to 5 (excellent):
1. Perspective taking: does the student show that they understand the patient's situation and point of view?
2. Emotional resonance: does the student recognise and respond to the patient's feelings with warmth and care?
3. Acknowledgment: does the student name or validate the patient's concerns, worries or experience?
4. Language and communication: is the wording clear, respectful, free of jargon and suited to the patient?
5. Cognitive empathy: does the student connect the patient's feelings to their clinical situation?
6. Affective empathy: does the student convey genuine concern rather than a formulaic phrase?

Then give an overall score from 1 to 5 and a level: Extending (5), Proficient (4), Competent (3), \
Advanced Beginner (2) or Novice (1). Quote the words that support each rating, name one or two concrete \
strengths, and suggest one or two specific improvements, each with an alternative phrasing the student \
could have used. Do not invent facts about the patient, and do not judge clinical accuracy, only empathy.

Answer with a single JSON object and nothing else, with these keys: "overall_score" (integer), \
"empathy_level" (string), "perspective_taking", "emotional_resonance", "acknowledgment", \
"language_communication", "cognitive_empathy" and "affective_empathy" (each an integer), "strengths" \
(list of strings), "areas_for_improvement" (list of strings), "improvement_examples" (list of strings) \
and "justification" (string, at most three sentences).
"""


def up(pgm: MigrationBuilder) -> None:
    pgm.create_table(
        "empathy_prompt_history",
        {
            "history_id": {"type": "uuid", "primary_key": True, "default": func("uuid_generate_v4()")},
            "prompt_content": {"type": "text", "not_null": True},
            "created_at": {"type": "timestamp", "default": func("CURRENT_TIMESTAMP")},
        },
        if_not_exists=True,
    )
    pgm.sql(
        "INSERT INTO empathy_prompt_history (prompt_content)"
        " SELECT {prompt} WHERE NOT EXISTS (SELECT 1 FROM empathy_prompt_history)",
        {"prompt": DEFAULT_EMPATHY_PROMPT},
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_table("empathy_prompt_history", if_exists=True, cascade=True)
