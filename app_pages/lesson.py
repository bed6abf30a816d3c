"""Lesson: Real NVP in eight steps, from the change-of-variables formula to sampling. Each step is a short text
with its formula, the live view it talks about, a link to that view in its full page, and a question to answer
before the reveal. The step is in the URL (?step=4), so a link sent to a class opens that step."""
import streamlit as st

from app.lesson import STEPS
from ui.lesson import VIEWS, follow_link
from ui.url_state import BIND

KEY = "step"  # the widget key, and the URL parameter
NUMBERS = list(range(1, len(STEPS) + 1))


def go(k: int) -> None:
    st.session_state[KEY] = k


follow_link()
st.title(":material/school: Real NVP in eight steps")
with st.container(horizontal=True, vertical_alignment="center"):
    back = st.empty()  # drawn once the step is known
    # a default only while the state holds no step: Back, Next and Contents set it through the Session State API,
    # and a widget given both logs Streamlit's "default value but also set via the Session State API" warning
    k = st.segmented_control("Step", NUMBERS, default=None if KEY in st.session_state else 1, required=True, key=KEY,
                             bind=BIND, label_visibility="collapsed")
    forward, contents = st.empty(), st.popover("Contents", icon=":material/list:")
    back.button("Back", icon=":material/chevron_left:", key="lesson_back", on_click=go, args=(k - 1,),
                disabled=k == 1)
    forward.button("Next", icon=":material/chevron_right:", key="lesson_next", on_click=go, args=(k + 1,),
                   disabled=k == len(STEPS))
    for n, s in zip(NUMBERS, STEPS):  # a link to each step, by its title
        contents.button(f"{n}. {s.title}", key=f"contents_{n}", type="tertiary", on_click=go, args=(n,),
                        disabled=n == k)
step = STEPS[k - 1]
st.progress(k / len(STEPS), text=f"Step {k} of {len(STEPS)}")

st.header(f"{k}. {step.title}")
text, view = (st.container(), st.container()) if step.wide else st.columns([2, 3])
text.markdown(step.text)
with view:
    facts = VIEWS[step.key]()
if facts is not None:
    with st.container() if step.wide else text:
        question = step.question
        choice = st.radio(f"**Predict first:** {question.prompt}", question.options, index=None, key=f"predict_{k}")
        right, why = question.answer(facts), question.why.format(**facts)
        if choice is None:
            st.caption("Choose an answer to see what the model does.")
        elif question.options.index(choice) == right:
            st.success("**Right.** " + why)
        else:
            st.warning(f"**Not quite:** the answer is *{question.options[right]}*. " + why)
