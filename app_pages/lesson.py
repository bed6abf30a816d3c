"""Lesson: Real NVP in eight steps, from the change-of-variables formula to sampling. Each step is a short text
with its formula, the live view it talks about, a link to that view in its full page, and a question to answer
before the reveal. The step is in the URL (?step=4), so a link sent to a class opens that step."""
import streamlit as st

from app.lesson import STEPS
from ui.lesson import VIEWS
from ui.url_state import BIND

KEY = "step"  # the widget key, and the URL parameter
NUMBERS = list(range(1, len(STEPS) + 1))


def go(k: int) -> None:
    st.session_state[KEY] = k


st.title("🎓 Real NVP in eight steps")
with st.sidebar:  # the contents: a link to each step
    k = st.radio("Lesson", NUMBERS, captions=[s.title for s in STEPS], key=KEY, bind=BIND)
step = STEPS[k - 1]

back, bar, forward = st.columns([1, 8, 1], vertical_alignment="center")
back.button("Back", icon=":material/chevron_left:", key="lesson_back", on_click=go, args=(k - 1,), disabled=k == 1,
            width="stretch")
bar.progress(k / len(STEPS), text=f"Step {k} of {len(STEPS)}")
forward.button("Next", icon=":material/chevron_right:", key="lesson_next", on_click=go, args=(k + 1,),
               disabled=k == len(STEPS), width="stretch")

st.header(f"{k}. {step.title}")
text, view = st.columns([2, 3])
text.markdown(step.text)
with view:
    facts = VIEWS[step.key]()
if facts is not None:
    with text:
        question = step.question
        choice = st.radio(f"**Predict first:** {question.prompt}", question.options, index=None, key=f"predict_{k}")
        right, why = question.answer(facts), question.why.format(**facts)
        if choice is None:
            st.caption("Choose an answer to see what the model does.")
        elif question.options.index(choice) == right:
            st.success("**Right.** " + why)
        else:
            st.warning(f"**Not quite:** the answer is *{question.options[right]}*. " + why)
